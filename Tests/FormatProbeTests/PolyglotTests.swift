import Foundation
import XCTest
@testable import FormatProbe

/// Files that are two things at once. An ISO's system area is free for any use, which makes it the
/// classic polyglot carrier: a qcow2 header there turns "just an ISO" into a disk with a backing
/// file for any reader that probes the first bytes. Legitimate layerings (hybrid ISOs, hybrid MBRs,
/// floppies without partition tables) must stay safe.
final class PolyglotTests: XCTestCase {
  /// A qcow2 version 3 header, big-endian (docs/interop/qcow2.txt), for a 1 MiB disk with 64 KiB
  /// clusters whose tables lie in sectors the ISO does not use.
  func qcow2Header() -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 104)
    func be32(_ v: UInt32, _ at: Int) { withUnsafeBytes(of: v.bigEndian) { for i in 0..<4 { h[at + i] = $0[i] } } }
    func be64(_ v: UInt64, _ at: Int) { withUnsafeBytes(of: v.bigEndian) { for i in 0..<8 { h[at + i] = $0[i] } } }
    h[0] = 0x51; h[1] = 0x46; h[2] = 0x49; h[3] = 0xFB  // magic "QFI\xfb"
    be32(3, 4)              // version
    be64(0, 8)              // backing_file_offset
    be32(0, 16)             // backing_file_size
    be32(16, 20)            // cluster_bits: 64 KiB
    be64(1 << 20, 24)       // size: 1 MiB
    be32(0, 32)             // crypt_method
    be32(1, 36)             // l1_size
    be64(0x30000, 40)       // l1_table_offset
    be64(0x10000, 48)       // refcount_table_offset
    be32(1, 56)             // refcount_table_clusters
    be32(0, 60)             // nb_snapshots
    be64(0, 64)             // snapshots_offset
    be64(0, 72)             // incompatible_features
    be64(0, 80)             // compatible_features
    be64(0, 88)             // autoclear_features
    be32(4, 96)             // refcount_order
    be32(104, 100)          // header_length
    return h
  }

  func testISOWithQcow2HeaderInSystemArea() throws {
    var b = ISOBuilder()
    b.totalSectors = 128
    b.systemArea = qcow2Header()
    let img = b.build()
    let result = Inspector.inspect(MemorySource(img))
    // Whatever the qcow2 probe decides, the file must not pass as a safe ISO.
    XCTAssertEqual(Policy().verdict(result.allFindings), .unsafe)
    // With the qcow2 probe in place both formats match: ambiguous.
    let qcow2 = try? QCOW2Probe.probe(try ProbeContext(source: MemorySource(img)))
    guard qcow2 != nil else { throw XCTSkip("the qcow2 probe does not decode this header yet; checked the iso.embedded-format finding only") }
    guard case .ambiguous(let candidates) = result.outcome else {
      return XCTFail("expected ambiguous, got \(result.outcome)")
    }
    XCTAssertEqual(Set(candidates.map(\.probe)), ["iso", "qcow2"])
  }

  /// A file both qemu (as a qcow2) and ISO readers accept: qemu-img's own qcow2 metadata
  /// (header, refcount table, refcount block, L1 table in clusters 0-3) with an ISO 9660 volume
  /// descriptor set in the unused part of cluster 0 and its directory after the L1 table.
  func testQemuReadablePolyglot() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgtool-polyglot-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let qcow = dir.appendingPathComponent("disk.qcow2")
    XCTAssertEqual(Fixtures.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", qcow.path, "1M"]).0, 0)
    let q = try [UInt8](Data(contentsOf: qcow))
    var b = ISOBuilder()
    b.totalSectors = 128
    b.rootSector = 100
    var img = b.build()
    // qcow2 metadata over the ISO: it only uses bytes the ISO leaves empty.
    for (i, byte) in q.enumerated() where byte != 0 && i < img.count { img[i] = byte }
    let path = dir.appendingPathComponent("polyglot.iso")
    try Data(img).write(to: path)
    // qemu-img, probing, calls it a qcow2 and nothing else.
    let (status, out) = Fixtures.run(["qemu-img", "info", "--output=json", path.path])
    XCTAssertEqual(status, 0)
    XCTAssertTrue(out.contains("\"format\": \"qcow2\""), out)
    // imgtool: never a safe ISO; ambiguous once the qcow2 probe decodes the header.
    let result = Inspector.inspect(try FileSource(path: path.path))
    XCTAssertEqual(Policy().verdict(result.allFindings), .unsafe)
    let isoOnly = Inspector.inspect(try FileSource(path: path.path), only: [ISOProbe.self])
    XCTAssertEqual(isoOnly.info?.findings.map(\.id), ["iso.embedded-format"])
    if Registry.probe(id: "qcow2").flatMap({ try? $0.probe(try ProbeContext(source: MemorySource(img))) }) != nil {
      guard case .ambiguous(let candidates) = result.outcome else { return XCTFail("expected ambiguous, got \(result.outcome)") }
      XCTAssertEqual(Set(candidates.map(\.probe)), ["iso", "qcow2"])
    }
  }

  func testISOWithForeignMagicIsFlaggedEvenWhenThatProbeRejectsIt() throws {
    // A qcow2 magic with a header no qcow2 reader accepts (version 99): still unsafe.
    var header = qcow2Header()
    header[7] = 99
    var b = ISOBuilder()
    b.totalSectors = 128
    b.systemArea = header
    let result = Inspector.inspect(MemorySource(b.build()))
    XCTAssertEqual(Policy().verdict(result.allFindings), .unsafe)
    if case let .identified(info) = result.outcome {
      XCTAssertEqual(info.probe, "iso")
      XCTAssertTrue(info.findings.contains { $0.id == "iso.embedded-format" })
    }
  }

  func inspectFixture(_ file: String) throws -> (InspectionResult, ImageInfo) {
    let path = try Fixtures.path("disc", file)
    guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(file) was not generated (tool missing)") }
    let result = Inspector.inspect(try FileSource(path: path))
    guard case let .identified(info) = result.outcome else {
      XCTFail("\(file): \(result.outcome)")
      throw XCTSkip("not identified")
    }
    return (result, info)
  }

  func testHybridISOsAreSafeISOs() throws {
    for file in ["hybrid-gpt.iso", "hybrid-mbr.iso", "appended-esp.iso", "isohybrid.iso", "apm-hfsplus.iso", "mac-hybrid.iso"] {
      let (result, info) = try inspectFixture(file)
      XCTAssertEqual(info.diskFormat, .iso, file)
      XCTAssertEqual(info.qemuFormat, "raw", file)
      XCTAssertNotNil(info.partitionTable, file)
      XCTAssertNil(info.filesystem, file)
      XCTAssertEqual(Policy().verdict(result.allFindings), .safe, "\(file): \(result.allFindings.map(\.id))")
    }
  }

  func testGPTWithHybridMBRIsSafeRaw() throws {
    let (result, info) = try inspectFixture("gpt-hybrid-mbr.img")
    XCTAssertEqual(info.probe, "raw")
    XCTAssertEqual(info.partitionTable?.at("mbr.kind"), .string("hybrid"))
    XCTAssertEqual(Policy().verdict(result.allFindings), .safe)
  }

  func testFATFloppyIsSafeRaw() throws {
    let (result, info) = try inspectFixture("floppy-1440k.img")
    XCTAssertEqual(info.probe, "raw")
    XCTAssertNil(info.partitionTable)
    XCTAssertEqual(info.filesystem?["type"], .string("fat12"))
    XCTAssertEqual(Policy().verdict(result.allFindings), .safe)
    // The hand-built floppy too.
    let built = Inspector.inspect(MemorySource(FATBuilder().build()))
    XCTAssertEqual(built.info?.probe, "raw")
    XCTAssertNil(built.info?.partitionTable)
    XCTAssertEqual(Policy().verdict(built.allFindings), .safe)
  }

  func testFilesystemInsideISOIsNotReportedAsTheISOsFilesystem() throws {
    // An ISO whose system area starts like an ext superblock region stays an ISO.
    var b = ISOBuilder()
    b.systemArea = [UInt8](repeating: 0, count: 1080) + [0x53, 0xEF]
    let result = Inspector.inspect(MemorySource(b.build()))
    XCTAssertEqual(result.info?.diskFormat, .iso)
    XCTAssertNil(result.info?.filesystem)
  }
}

/// Deterministic mutation runs over the hand-built structures: whatever a byte becomes, every probe
/// answers (match, nil or ImageError) and never traps.
final class DiscMutationTests: XCTestCase {
  struct LCG {
    var state: UInt64
    mutating func next() -> UInt64 {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return state >> 33
    }
  }

  func mutate(_ base: [UInt8], hot: [Range<Int>], rounds: Int, seed: UInt64) {
    var rng = LCG(state: seed)
    for _ in 0..<rounds {
      var img = base
      for _ in 0..<(1 + Int(rng.next() % 8)) {
        let range = hot[Int(rng.next() % UInt64(hot.count))]
        let at = range.lowerBound + Int(rng.next() % UInt64(range.count))
        guard at < img.count else { continue }
        switch rng.next() % 4 {
        case 0: img[at] = 0xFF
        case 1: img[at] = 0
        case 2: img[at] ^= UInt8(1 << (rng.next() % 8))
        default: img[at] = UInt8(truncatingIfNeeded: rng.next())
        }
      }
      if rng.next() % 8 == 0 { img = Array(img.prefix(Int(rng.next() % UInt64(img.count + 1)))) }
      _ = Inspector.inspect(MemorySource(img))
      if let ctx = try? ProbeContext(source: MemorySource(img)), let info = try? ISOProbe.probe(ctx) {
        _ = ISOProbe.deepCheck(ctx, info)
      }
    }
  }

  func testMutatedISOs() {
    var b = ISOBuilder()
    b.totalSectors = 300
    b.joliet = true
    b.nsr = "NSR03"
    b.udfAnchor = true
    b.bootCatalogSector = 30
    b.catalog = ElTorito.validation() + ElTorito.entry(rba: 31)
      + ElTorito.section(final: true, platform: 0xEF, count: 2) + ElTorito.entry(rba: 32) + ElTorito.entry(rba: 33)
    let s = 2048
    mutate(b.build(), hot: [16 * s..<16 * s + 1024, 17 * s..<17 * s + 100, 30 * s..<30 * s + 160,
                            20 * s..<24 * s, 256 * s..<256 * s + 32, 260 * s..<263 * s],
           rounds: 1500, seed: 1)
  }

  func testMutatedPartitionTables() {
    var g = GPTBuilder()
    g.partitions = [GPTPartitionSpec(first: 100, last: 499), GPTPartitionSpec(first: 500, last: 1999)]
    let gpt = g.build()
    mutate(gpt, hot: [440..<512, 512..<604, 1024..<1400, 2047 * 512..<2047 * 512 + 92], rounds: 1500, seed: 2)
    var img = [UInt8](repeating: 0, count: 20480 * 512)
    img.put(MBRBuilder(entries: [MBREntrySpec(type: 0x83, firstLBA: 2048, sectors: 2048),
                                 MBREntrySpec(type: 0x05, firstLBA: 8192, sectors: 8192)]).build(), at: 0)
    img.put(MBRBuilder(signature: 0, entries: [MBREntrySpec(type: 0x83, firstLBA: 2048, sectors: 1024),
                                               MBREntrySpec(type: 0x05, firstLBA: 4096, sectors: 2048)]).build(), at: 8192 * 512)
    img.put(MBRBuilder(signature: 0, entries: [MBREntrySpec(type: 0x83, firstLBA: 2048, sectors: 1024)]).build(), at: 12288 * 512)
    mutate(img, hot: [446..<512, 8192 * 512 + 446..<8192 * 512 + 512, 12288 * 512 + 446..<12288 * 512 + 512],
           rounds: 600, seed: 3)
  }

  func testMutatedDirectoryTrees() {
    var b = ISOBuilder()
    b.totalSectors = 64
    b.joliet = true
    b.jolietRootSector = 50
    b.directories[40] = [ISOBuilder.record(lba: 40, length: 2048, directory: true, name: [0]),
                         ISOBuilder.record(lba: 40, length: 2048, directory: true, name: [1]),
                         ISOBuilder.record(lba: 44, length: 100, name: Array("README.TXT;1".utf8)),
                         ISOBuilder.record(lba: 45, length: 2048, directory: true, name: Array("DOCS".utf8))]
    b.directories[45] = [ISOBuilder.record(lba: 45, length: 2048, directory: true, name: [0]),
                         ISOBuilder.record(lba: 40, length: 2048, directory: true, name: [1]),
                         ISOBuilder.record(lba: 46, length: 5000, name: Array("A.TXT;1".utf8))]
    b.directories[50] = b.directories[40]
    let s = 2048
    mutate(b.build(), hot: [40 * s..<40 * s + 200, 45 * s..<45 * s + 150, 50 * s..<50 * s + 200, 16 * s + 156..<16 * s + 190],
           rounds: 1500, seed: 5)
  }

  func testMutatedFilesystems() {
    mutate(FATBuilder().build(), hot: [0..<64, 500..<512], rounds: 1000, seed: 4)
  }
}
