import Foundation
import XCTest
@testable import FormatProbe

/// Builds a ploop image, one field per property (offsets in PloopProbe's table).
struct PloopBuilder {
  var magic = "WithouFreSpacExt"   // 0: BAT in clusters ("WithoutFreeSpace": in sectors)
  var version: UInt32 = 2          // 16
  var heads: UInt32 = 16           // 20
  var cylinders: UInt32 = 1        // 24
  var tracks: UInt32 = 8           // 28: 4 KiB clusters
  var batEntries: UInt32 = 4       // 32
  var nbSectors: UInt64 = 32       // 36
  var inUse: UInt32 = 0            // 44
  var dataOff: UInt32 = 8          // 48: data from sector 8 (cluster 1)
  var flags: UInt32 = 0            // 52
  var extOff: UInt64 = 0           // 56
  /// BAT entries (cluster numbers for the ext magic; 0 unallocated).
  var bat: [UInt32] = [1, 0, 2, 0]

  func image() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 64)
    b.vkPut(Array(magic.utf8), at: 0)
    b.vkPut32(version, at: 16)
    b.vkPut32(heads, at: 20)
    b.vkPut32(cylinders, at: 24)
    b.vkPut32(tracks, at: 28)
    b.vkPut32(batEntries, at: 32)
    b.vkPut64(nbSectors, at: 36)
    b.vkPut32(inUse, at: 44)
    b.vkPut32(dataOff, at: 48)
    b.vkPut32(flags, at: 52)
    b.vkPut64(extOff, at: 56)
    b.vkPad(to: 64 + bat.count * 4)
    for (i, e) in bat.enumerated() { b.vkPut32(e, at: 64 + i * 4) }
    let mult = magic == "WithouFreSpacExt" ? Int(tracks) : 1
    let end = (bat.filter { $0 != 0 }.map { Int($0) * mult * 512 + Int(tracks) * 512 }.max() ?? Int(dataOff) * 512)
    b.vkPad(to: max(end, Int(dataOff) * 512))
    return b
  }
}

final class PloopTests: XCTestCase {
  typealias P = VMDKFamily

  func check(_ bytes: [UInt8]) throws -> CheckReport {
    let ctx = try P.ctx(bytes)
    let info = try XCTUnwrap(try PloopProbe.probe(ctx))
    return PloopProbe.deepCheck(ctx, info)
  }

  func testValid() throws {
    let b = PloopBuilder()
    let info = try XCTUnwrap(try P.info(PloopProbe.self, b.image()))
    XCTAssertEqual(info.qemuFormat, "parallels")
    XCTAssertEqual(info.diskFormat, .ploop)
    XCTAssertEqual(info.virtualSize, 32 * 512)
    XCTAssertEqual(info.clusterSize, 4096)
    XCTAssertEqual(info.findings, [])
    let r = try check(b.image())
    XCTAssertEqual(r.findings, [])
    XCTAssertEqual(r.counts.json.at("allocated-clusters")?.uint, 2)
    XCTAssertEqual(r.counts.json.at("image-end-offset")?.uint, 3 * 4096)
  }

  func testLegacyMagicTruncatesSectors() throws {
    var b = PloopBuilder()
    b.magic = "WithoutFreeSpace"
    b.nbSectors = (1 << 32) | 32
    b.bat = [8, 0, 16, 0]
    let info = try XCTUnwrap(try P.info(PloopProbe.self, b.image()))
    XCTAssertEqual(info.subformat, "legacy")
    XCTAssertEqual(info.virtualSize, 32 * 512, "qemu keeps only 32 bits of nb_sectors in the old format")
    XCTAssertEqual(try check(b.image()).findings, [])
  }

  func testHeaderErrors() {
    var b = PloopBuilder()
    b.version = 3
    XCTAssertEqual(P.error(PloopProbe.self, b.image())?.finding, "ploop.version")
    b = PloopBuilder()
    b.tracks = 0
    XCTAssertEqual(P.error(PloopProbe.self, b.image())?.finding, "ploop.cluster-size")
    b = PloopBuilder()
    b.batEntries = 0x8000_0000
    b.bat = []
    XCTAssertEqual(P.error(PloopProbe.self, b.image())?.finding, "ploop.bat-size")
    XCTAssertEqual(P.error(PloopProbe.self, Array(PloopBuilder().image().prefix(40)))?.kind, .truncated)
    XCTAssertNil(try P.info(PloopProbe.self, [UInt8](repeating: 0, count: 512)))
  }

  func testHeaderFindings() throws {
    var b = PloopBuilder()
    b.inUse = 0x746f6e59
    let info = try P.info(PloopProbe.self, b.image())
    XCTAssertEqual(P.ids(info), ["ploop.dirty"])
    XCTAssertEqual(info?.dirty, true)
    b.inUse = 5
    XCTAssertEqual(P.ids(try P.info(PloopProbe.self, b.image())), ["ploop.inuse"])
    b = PloopBuilder()
    b.nbSectors = 1000
    XCTAssertEqual(P.ids(try P.info(PloopProbe.self, b.image())), ["ploop.bat-too-small"])
    b = PloopBuilder()
    b.dataOff = 0
    b.batEntries = 200
    b.bat = [UInt32](repeating: 0, count: 200)
    b.nbSectors = 8
    XCTAssertEqual(P.ids(try P.info(PloopProbe.self, b.image())), [])
    var img = PloopBuilder().image()
    img.vkPut32(100_000, at: 32)
    XCTAssertTrue(P.ids(try P.info(PloopProbe.self, img)).contains("ploop.bat-truncated"))
    b = PloopBuilder()
    b.dataOff = 0
    b.bat = [1, 0, 2, 0]
    XCTAssertEqual(P.ids(try P.info(PloopProbe.self, b.image())), [])
  }

  func testBATCorruption() throws {
    var b = PloopBuilder()
    b.bat = [1, 1, 2, 0]
    let r = try check(b.image())
    XCTAssertEqual(r.findings.map(\.id), ["ploop.bat-duplicate"])
    XCTAssertEqual(r.counts.json.at("corruptions")?.uint, 1)
    b.bat = [1, 0, 2, 0]
    var img = b.image()
    img.vkPut32(500, at: 64 + 4)
    XCTAssertEqual(try check(img).findings.map(\.id), ["ploop.cluster-out-of-range"])
    img = b.image()
    img.vkPut32(0xffff_ffff, at: 64 + 12)
    XCTAssertEqual(try check(img).findings.map(\.id), ["ploop.cluster-out-of-range"])
  }

  func testDataOffsetInsideTheBAT() throws {
    // 200 entries: the BAT runs from byte 64 to 864, so data_off = 1 (byte 512) starts the data
    // inside it and data_off = 2 (byte 1024) just after it.
    var b = PloopBuilder()
    b.batEntries = 200
    b.bat = [UInt32](repeating: 0, count: 200)
    b.dataOff = 2
    XCTAssertEqual(P.ids(try P.info(PloopProbe.self, b.image())), [])
    b.dataOff = 1
    let info = try XCTUnwrap(try P.info(PloopProbe.self, b.image()))
    XCTAssertEqual(P.ids(info), ["ploop.data-offset"])
    let f = info.findings[0]
    XCTAssertEqual(f.severity, .corrupt)
    XCTAssertEqual(f.field, "data_off")
    XCTAssertEqual(f.offset, 48)
  }
}

/// `qemu-img check --output=json` as the oracle for the deep-check counters it shares.
final class VMDKFamilyCheckOracleTests: XCTestCase {
  func testCountersMatchQemuImgCheck() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    let cases: [(String, String, [String])] = [
      ("ploop-data.hds", "parallels", ["allocated-clusters", "total-clusters", "image-end-offset", "check-errors", "leaks", "fragmented-clusters"]),
      ("ploop.hds", "parallels", ["allocated-clusters", "total-clusters", "image-end-offset", "check-errors", "leaks", "fragmented-clusters"]),
      ("data.vdi", "vdi", ["check-errors"]),
      ("mono-data.vmdk", "vmdk", ["check-errors"]),
      ("stream-data.vmdk", "vmdk", ["check-errors"]),
      ("stream-footer.vmdk", "vmdk", ["check-errors"]),
    ]
    // A ploop image with one cluster past its last used one: qemu-img counts it as a leak.
    let leaky = FileManager.default.temporaryDirectory.appendingPathComponent("imgtool-leaky-\(getpid()).hds")
    defer { try? FileManager.default.removeItem(at: leaky) }
    var bytes = try Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("vmdk", "ploop-data.hds")))
    bytes.append(Data(repeating: 0, count: 1 << 20))
    try bytes.write(to: leaky)
    let (_, out) = Fixtures.run(["qemu-img", "check", "--output=json", "-f", "parallels", leaky.path])
    // qemu-img also prints "ERROR space leaked ..." on stderr (same pipe): keep the JSON object.
    let json = out.firstIndex(of: "{").flatMap { a in out.lastIndex(of: "}").map { String(out[a...$0]) } } ?? out
    let theirs = try JSONParser.parse(json, format: "qemu-img")
    let ctx = try ProbeContext(source: try FileSource(path: leaky.path))
    let ours = PloopProbe.deepCheck(ctx, try XCTUnwrap(try PloopProbe.probe(ctx)))
    XCTAssertEqual(theirs.at("leaks")?.uint, 1)
    XCTAssertEqual(ours.counts.json.at("leaks")?.uint, theirs.at("leaks")?.uint)
    // Hand-corrupted copies: (source, offset, new u32, driver, keys compared, qemu's corruptions
    // when it differs from ours, why).
    let corrupted: [(String, Int, UInt32, String, [String], UInt64?)] = [
      ("data.vdi", 516, 0, "vdi", ["corruptions"], nil),              // block 1 -> data block 0 (duplicate)
      ("data.vdi", 516, 99, "vdi", ["corruptions"], nil),             // block index too large (+ count mismatch)
      ("ploop-data.hds", 68, 99, "parallels", ["corruptions", "allocated-clusters", "image-end-offset", "fragmented-clusters"], nil),
      // qemu-img 7.2 does not notice two BAT entries sharing a cluster; imgtool does.
      ("ploop-data.hds", 68, 1, "parallels", ["allocated-clusters", "fragmented-clusters"], 0),
    ]
    for (n, (file, at, value, driver, keys, qemuCorruptions)) in corrupted.enumerated() {
      let copy = FileManager.default.temporaryDirectory.appendingPathComponent("imgtool-corrupt-\(getpid())-\(n)")
      defer { try? FileManager.default.removeItem(at: copy) }
      var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("vmdk", file))))
      b.vkPut32(value, at: at)
      try Data(b).write(to: copy)
      let (_, out) = Fixtures.run(["qemu-img", "check", "--output=json", "-f", driver, copy.path])
      let json = out.firstIndex(of: "{").flatMap { a in out.lastIndex(of: "}").map { String(out[a...$0]) } } ?? out
      let theirs = try JSONParser.parse(json, format: "qemu-img")
      let ctx = try ProbeContext(source: try FileSource(path: copy.path))
      let report = driver == "vdi" ? VDIProbe.deepCheck(ctx, try XCTUnwrap(try VDIProbe.probe(ctx)))
        : PloopProbe.deepCheck(ctx, try XCTUnwrap(try PloopProbe.probe(ctx)))
      for k in keys {
        XCTAssertEqual(report.counts.json.at(k)?.uint ?? 0, theirs.at(k)?.uint ?? 0, "\(file) #\(n): \(k)")
      }
      if let q = qemuCorruptions {
        XCTAssertEqual(theirs.at("corruptions")?.uint ?? 0, q, "\(file) #\(n): qemu-img's corruptions changed")
        XCTAssertEqual(report.counts.json.at("corruptions")?.uint, 1)
      }
    }
    // VMDK: qemu-img check stops at the first grain past the end of the file and fails the whole
    // check ("Check failed: Invalid argument"), giving no counts; imgtool reports every grain.
    do {
      let copy = FileManager.default.temporaryDirectory.appendingPathComponent("imgtool-corrupt-\(getpid()).vmdk")
      defer { try? FileManager.default.removeItem(at: copy) }
      var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("vmdk", "mono-data.vmdk"))))
      func u32(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24 }
      let gt = u32(u32(56) * 512) * 512, rgt = u32(u32(48) * 512) * 512
      for e in 0..<3 { b.vkPut32(999_999, at: gt + e * 4); b.vkPut32(999_999, at: rgt + e * 4) }
      try Data(b).write(to: copy)
      let (status, out) = Fixtures.run(["qemu-img", "check", "--output=json", "-f", "vmdk", copy.path])
      XCTAssertNotEqual(status, 0)
      XCTAssertTrue(out.contains("points after EOF"), out)
      let ctx = try ProbeContext(source: try FileSource(path: copy.path))
      let r = VMDKProbe.deepCheck(ctx, try XCTUnwrap(try VMDKProbe.probe(ctx)))
      XCTAssertEqual(r.findings.map(\.id), ["vmdk.grain-out-of-range", "vmdk.grain-out-of-range", "vmdk.grain-out-of-range"])
      XCTAssertEqual(r.counts.json.at("corruptions")?.uint, 3)
    }
    for (file, driver, keys) in cases {
      let path = try Fixtures.path("vmdk", file)
      let (status, out) = Fixtures.run(["qemu-img", "check", "--output=json", "-f", driver, path])
      XCTAssertEqual(status, 0, out)
      let theirs = try JSONParser.parse(out, format: "qemu-img")
      let ctx = try ProbeContext(source: try FileSource(path: path))
      let report: CheckReport
      switch driver {
      case "parallels": report = PloopProbe.deepCheck(ctx, try XCTUnwrap(try PloopProbe.probe(ctx)))
      case "vdi": report = VDIProbe.deepCheck(ctx, try XCTUnwrap(try VDIProbe.probe(ctx)))
      default: report = VMDKProbe.deepCheck(ctx, try XCTUnwrap(try VMDKProbe.probe(ctx)))
      }
      for k in keys {
        // qemu-img leaves out counters that are zero.
        XCTAssertEqual(report.counts.json.at(k)?.uint ?? 0, theirs.at(k)?.uint ?? 0, "\(file): \(k)")
      }
    }
  }
}
