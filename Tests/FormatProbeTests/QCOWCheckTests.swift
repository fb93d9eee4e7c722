import Foundation
import XCTest
@testable import FormatProbe

/// The qcow2 deep check: counts agree with `qemu-img check` on real images, and every finding id
/// has a hostile image that triggers it and valid images that must not.
final class QCOWCheckTests: XCTestCase {
  static let validFixtures = ["v2.qcow2", "v3.qcow2", "c512.qcow2", "c2m.qcow2", "lazy.qcow2", "rc1.qcow2", "rc16.qcow2",
                              "rc64.qcow2", "el2.qcow2", "zstd.qcow2", "compressed.qcow2", "compressed-zstd.qcow2",
                              "overlay.qcow2", "datafile.qcow2", "enc.qcow2", "snap.qcow2", "bitmap.qcow2", "snaps.qcow2",
                              "prealloc.qcow2", "damaged.qcow2"]
  /// One table entry rewritten in each (make.sh): qemu-img check's counts must be reproduced.
  static let damagedFixtures = ["damaged-copied.qcow2", "damaged-overlap.qcow2", "damaged-l2-eof.qcow2", "damaged-l1-dup.qcow2",
                                "damaged-l1-eof.qcow2", "damaged-l1-rt.qcow2", "damaged-compressed.qcow2", "damaged-rt-eof.qcow2",
                                "damaged-l2-reserved.qcow2"]
  static let qemuCountKeys = ["leaks", "corruptions", "check-errors", "allocated-clusters", "fragmented-clusters",
                              "compressed-clusters", "total-clusters", "image-end-offset"]

  static func deepCheck(_ path: String) throws -> CheckReport {
    let ctx = try ProbeContext(source: FileSource(path: path))
    let info = try XCTUnwrap(try QCOW2Probe.probe(ctx))
    return QCOW2Probe.deepCheck(ctx, info)
  }

  static func deepCheck(_ bytes: [UInt8]) throws -> CheckReport {
    let ctx = try ProbeContext(source: MemorySource(bytes, name: "built.qcow2"))
    let info = try XCTUnwrap(try QCOW2Probe.probe(ctx))
    return QCOW2Probe.deepCheck(ctx, info)
  }

  /// qemu-img check run in the image's directory: QEMU 7.2 resolves a relative external data file
  /// name against the working directory, not the image's. The encrypted fixture needs its secret.
  static func qemuCheck(_ path: String) -> JSON? {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    let name = url.lastPathComponent
    let argv = name == "enc.qcow2"
      ? ["-C", dir, "qemu-img", "check", "--output=json", "--object", "secret,id=sec0,data=fixture-secret", "--image-opts",
         "driver=qcow2,file.filename=\(name),encrypt.key-secret=sec0"]
      : ["-C", dir, "qemu-img", "check", "--output=json", "-f", "qcow2", name]
    let (_, out) = Fixtures.run(argv)
    guard let start = out.firstIndex(of: "{") else { return nil }
    return try? JSONParser.parse(String(out[start...]), format: "qemu-img")
  }

  func testCountsAgreeWithQemuImgCheck() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    for file in Self.validFixtures + Self.damagedFixtures + ["leak.qcow2", "refcount-zero.qcow2"] {
      let path = try Fixtures.path("qcow", file)
      let ours = try Self.deepCheck(path).counts.json
      let theirs = try XCTUnwrap(Self.qemuCheck(path), file)
      for key in Self.qemuCountKeys {
        // qemu-img leaves out zero counters.
        XCTAssertEqual(ours[key]?.uint, theirs[key]?.uint ?? 0, "\(file): \(key)")
      }
    }
  }

  func testQEDCountsAgreeWithQemuImgCheck() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    for file in ["v.qed", "backing.qed", "data.qed", "leak.qed"] {
      let path = try Fixtures.path("qcow", file)
      let ctx = try ProbeContext(source: FileSource(path: path))
      let info = try XCTUnwrap(try QEDProbe.probe(ctx))
      let report = QEDProbe.deepCheck(ctx, info)
      let ours = report.counts.json
      let url = URL(fileURLWithPath: path)
      let (_, out) = Fixtures.run(["-C", url.deletingLastPathComponent().path, "qemu-img", "check", "--output=json", "-f", "qed",
                                   url.lastPathComponent])
      let theirs = try JSONParser.parse(String(out[try XCTUnwrap(out.firstIndex(of: "{"))...]), format: "qemu-img")
      for key in ["leaks", "corruptions", "check-errors", "allocated-clusters", "fragmented-clusters", "total-clusters"] {
        XCTAssertEqual(ours[key]?.uint, theirs[key]?.uint ?? 0, "\(file): \(key)")
      }
      XCTAssertEqual(report.findings.map(\.id), file == "leak.qed" ? ["qed.leaked-clusters"] : [], file)
    }
  }

  func testValidFixturesHaveNoCorruptFindings() throws {
    for file in Self.validFixtures {
      let report = try Self.deepCheck(try Fixtures.path("qcow", file))
      XCTAssertEqual(report.findings.map(\.id), [], "\(file): \(report.findings.map(\.message))")
      XCTAssertEqual(report.counts.json["corruptions"]?.uint, 0, file)
      XCTAssertEqual(report.counts.json["leaks"]?.uint, 0, file)
    }
  }

  func testDamagedFixturesAreCorrupt() throws {
    for file in Self.damagedFixtures {
      let report = try Self.deepCheck(try Fixtures.path("qcow", file))
      XCTAssertTrue(report.findings.contains { $0.severity == .corrupt }, "\(file): \(report.findings.map(\.id))")
      XCTAssertGreaterThan(report.counts.json["corruptions"]?.uint ?? 0, 0, file)
    }
  }

  func testLeakFixture() throws {
    let report = try Self.deepCheck(try Fixtures.path("qcow", "leak.qcow2"))
    XCTAssertEqual(report.findings.map(\.id), ["qcow2.leaked-clusters"])
    XCTAssertEqual(report.findings.first?.severity, .warning)
    XCTAssertEqual(report.counts.json["leaks"]?.uint, 1)
    XCTAssertEqual(report.counts.json["corruptions"]?.uint, 0)
  }

  func testRefcountZeroFixture() throws {
    let report = try Self.deepCheck(try Fixtures.path("qcow", "refcount-zero.qcow2"))
    XCTAssertEqual(Set(report.findings.map(\.id)), ["qcow2.refcount-mismatch"])
    XCTAssertEqual(report.counts.json["corruptions"]?.uint, 1)
  }

  func testTruncatedFixtureIsCorrupt() throws {
    let report = try Self.deepCheck(try Fixtures.path("qcow", "truncated.qcow2"))
    XCTAssertTrue(report.findings.contains { $0.severity == .corrupt && $0.id == "qcow2.truncated" }, "\(report.findings.map(\.id))")
    XCTAssertGreaterThan(report.counts.json["corruptions"]?.uint ?? 0, 0)
    // qemu-img also counts the cut-off snapshot table among its corruptions; imgtool reports that
    // as the header-level finding qcow2.snapshot-table. Leaks and the end offset agree.
    if Fixtures.run(["qemu-img", "--version"]).0 == 0, let qemu = Self.qemuCheck(try Fixtures.path("qcow", "truncated.qcow2")) {
      XCTAssertEqual(report.counts.json["leaks"]?.uint, qemu["leaks"]?.uint ?? 0)
      XCTAssertEqual(report.counts.json["image-end-offset"]?.uint, qemu["image-end-offset"]?.uint)
    }
  }
}

/// Hand-built hostile images, one per finding id, each next to the valid image it was made from.
final class QCOWCheckHostileTests: XCTestCase {
  static let copied: UInt64 = 1 << 63
  static let compressedFlag: UInt64 = 1 << 62

  /// A valid image with `bits`-bit clusters: header, refcount table, refcount block, L1, then
  /// cluster 4 an L2 table naming cluster 5, a data cluster (all refcount 1, COPIED set).
  static func withData(bits: UInt32 = 9) -> QCOW2Builder {
    var b = QCOW2Builder()
    b.clusterBits = bits
    let cs = UInt64(1) << UInt64(bits)
    b.refcountTableOffset = cs
    b.l1TableOffset = 3 * cs
    b.size = 1 << 20
    b.l1Size = UInt32(max(1, Checked.ceilDiv(b.size, (cs / 8) * cs)))
    b.l1Entries = [4 * cs | copied]
    b.tail = [b.table([5 * cs | copied]), [UInt8](repeating: 0x5a, count: Int(cs))]
    b.refcounts = [0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1]
    return b
  }

  static func check(_ b: QCOW2Builder) throws -> CheckReport { try QCOWCheckTests.deepCheck(b.build()) }
  static func ids(_ r: CheckReport) -> Set<String> { Set(r.findings.map(\.id)) }
  static func count(_ r: CheckReport, _ key: String) -> UInt64? { r.counts.json[key]?.uint }

  func testValidBuiltImages() throws {
    for bits: UInt32 in [9, 12, 16] {
      let r = try Self.check(Self.withData(bits: bits))
      XCTAssertEqual(r.findings.map(\.id), [], "bits \(bits): \(r.findings.map(\.message))")
      XCTAssertEqual(Self.count(r, "corruptions"), 0)
      XCTAssertEqual(Self.count(r, "leaks"), 0)
      XCTAssertEqual(Self.count(r, "allocated-clusters"), 1)
      XCTAssertEqual(Self.count(r, "image-end-offset"), 6 << UInt64(bits))
    }
    // The empty image too.
    XCTAssertEqual(try Self.check(QCOW2Builder()).findings.map(\.id), [])
  }

  func testRefcountWidths() throws {
    for order: UInt32 in 0...6 {
      var b = Self.withData()
      b.refcountOrder = order
      let r = try Self.check(b)
      XCTAssertEqual(r.findings.map(\.id), [], "order \(order): \(r.findings.map(\.message))")
      b.refcounts[5] = 0
      XCTAssertEqual(Self.count(try Self.check(b), "corruptions"), 2, "order \(order): refcount 0 and COPIED")
    }
  }

  func testL1Entry() throws {
    var b = Self.withData()
    b.l1Entries = [4 * 512 | Self.copied | 1 << 60]
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.l1-entry"))
    // Misaligned L2 table (needs clusters larger than 512 bytes to express).
    var c = Self.withData(bits: 16)
    c.l1Entries = [4 << 16 | 0x200 | Self.copied]
    let r = try Self.check(c)
    XCTAssertTrue(Self.ids(r).contains("qcow2.l1-entry"), "\(r.findings.map(\.message))")
    // An L2 table named twice by one L1 table.
    var d = Self.withData()
    d.size = 64 << 10
    d.l1Size = 2
    d.l1Entries = [4 * 512 | Self.copied, 4 * 512 | Self.copied]
    let dup = try Self.check(d)
    XCTAssertTrue(Self.ids(dup).contains("qcow2.l1-entry"))
    XCTAssertTrue(Self.ids(dup).contains("qcow2.refcount-mismatch"))
  }

  func testL2Entry() throws {
    var b = Self.withData()
    b.tail[0] = b.table([5 * 512 | Self.copied | 1 << 57])
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.l2-entry"))
    var c = Self.withData(bits: 16)
    c.tail[0] = c.table([5 << 16 | 0x400 | Self.copied])
    XCTAssertTrue(Self.ids(try Self.check(c)).contains("qcow2.l2-entry"))
  }

  func testCompressedEntry() throws {
    // Valid: one compressed cluster of one sector at cluster 5 (x = 62 - (9 - 8) = 61).
    var b = Self.withData()
    b.tail[0] = b.table([Self.compressedFlag | 5 * 512])
    let ok = try Self.check(b)
    XCTAssertEqual(ok.findings.map(\.id), [], "\(ok.findings.map(\.message))")
    XCTAssertEqual(Self.count(ok, "compressed-clusters"), 1)
    b.tail[0] = b.table([Self.compressedFlag | Self.copied | 5 * 512])
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.compressed-entry"))
    // A compressed descriptor far beyond the end of the file.
    b.tail[0] = b.table([Self.compressedFlag | 4000 * 512])
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.truncated"))
  }

  func testSubclusterBitmap() throws {
    var b = Self.withData(bits: 14)
    b.incompatibleFeatures = 1 << 4
    let cs = UInt64(1) << 14
    func l2(_ entry: UInt64, _ bitmap: UInt64) -> [UInt8] { b.table([entry, bitmap]) }
    b.tail[0] = l2(5 * cs | Self.copied, 0x0000_0000_ffff_ffff)  // all subclusters allocated
    let ok = try Self.check(b)
    XCTAssertEqual(ok.findings.map(\.id), [], "\(ok.findings.map(\.message))")
    b.tail[0] = l2(5 * cs | Self.copied, 0x0000_0001_0000_0001)  // subcluster 0 allocated and zero
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.subcluster-bitmap"))
    b.tail[0] = l2(0, 0x0000_0000_0000_0003)                     // unallocated with allocated subclusters
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.subcluster-bitmap"))
    b.tail[0] = l2(Self.compressedFlag | 5 * cs, 1)              // compressed with a bitmap
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.subcluster-bitmap"))
  }

  func testRefcountBlock() throws {
    // The refcount table entry is rewritten by hand in the built image (cluster 1).
    func image(_ entry: UInt64) -> [UInt8] {
      var bytes = Self.withData().build()
      bytes.replaceSubrange(512..<520, with: QCOW2Builder.be64(entry))
      return bytes
    }
    for entry: UInt64 in [2 * 512 | 1, 1 << 40, 3 * 512] {  // reserved bits, beyond the file, shared with the L1
      let r = try QCOWCheckTests.deepCheck(image(entry))
      XCTAssertTrue(Self.ids(r).contains("qcow2.refcount-block"), "\(hex(entry)): \(r.findings.map(\.message))")
    }
  }

  func testRefcountMismatchAndLeak() throws {
    var b = Self.withData()
    b.refcounts[5] = 0
    let r = try Self.check(b)
    XCTAssertTrue(Self.ids(r).contains("qcow2.refcount-mismatch"))
    XCTAssertEqual(r.findings.first { $0.id == "qcow2.refcount-mismatch" }?.severity, .corrupt)
    var c = Self.withData()
    c.refcounts[5] = 2  // more than its one reference, and COPIED says refcount 1
    c.refcounts[6] = 1
    c.tail.append([UInt8](repeating: 0, count: 512))
    let leak = try Self.check(c)
    XCTAssertTrue(Self.ids(leak).contains("qcow2.leaked-clusters"))
    XCTAssertEqual(Self.count(leak, "leaks"), 2)
    XCTAssertTrue(Self.ids(leak).contains("qcow2.copied-flag"))
  }

  func testCopiedFlag() throws {
    var b = Self.withData()
    b.tail[0] = b.table([5 * 512])  // refcount 1 without COPIED
    let r = try Self.check(b)
    XCTAssertEqual(Self.ids(r), ["qcow2.copied-flag"])
    XCTAssertEqual(Self.count(r, "corruptions"), 1)
    b.tail[0] = b.table([5 * 512 | Self.copied])
    b.l1Entries = [4 * 512]  // the L2 table's COPIED flag missing
    XCTAssertEqual(Self.ids(try Self.check(b)), ["qcow2.copied-flag"])
  }

  func testMetadataOverlap() throws {
    var b = Self.withData()
    b.tail[0] = b.table([3 * 512 | Self.copied])  // the data cluster is the L1 table
    let r = try Self.check(b)
    XCTAssertTrue(Self.ids(r).contains("qcow2.metadata-overlap"), "\(r.findings.map(\.message))")
  }

  func testTruncatedTables() throws {
    var b = Self.withData()
    b.l1Entries = [1 << 30 | Self.copied]  // L2 table beyond the end of the file
    let r = try Self.check(b)
    XCTAssertTrue(Self.ids(r).contains("qcow2.truncated"))
    XCTAssertGreaterThan(Self.count(r, "corruptions") ?? 0, 0)
    // The file cut inside the L2 table.
    let cut = Array(Self.withData().build().prefix(4 * 512 + 100))
    let c = try QCOWCheckTests.deepCheck(cut)
    XCTAssertTrue(Self.ids(c).contains("qcow2.truncated"), "\(c.findings.map(\.message))")
  }

  func testBitmapTable() throws {
    var b = Self.withData()
    b.autoclearFeatures = 1
    b.extensions = [(0x2385_2875, QCOW2Builder.be32(1) + QCOW2Builder.be32(0) + QCOW2Builder.be64(32) + QCOW2Builder.be64(6 * 512))]
    var d = [UInt8]()
    d += QCOW2Builder.be64(7 * 512)  // bitmap_table_offset
    d += QCOW2Builder.be32(1)        // bitmap_table_size
    d += QCOW2Builder.be32(2)        // flags: auto
    d += [1, 16]                     // type, granularity_bits
    d += QCOW2Builder.be16(2)        // name_size
    d += QCOW2Builder.be32(0)        // extra_data_size
    d += Array("b0".utf8)
    b.tail += [d, b.table([8 * 512]), [UInt8](repeating: 0xff, count: 512)]
    b.refcounts[6] = 1; b.refcounts[7] = 1; b.refcounts[8] = 1
    let ok = try Self.check(b)
    XCTAssertEqual(ok.findings.map(\.id), [], "\(ok.findings.map(\.message))")
    b.tail[3] = b.table([8 * 512 | 1 << 3])
    XCTAssertTrue(Self.ids(try Self.check(b)).contains("qcow2.bitmap-table"))
    // Without the autoclear bit the bitmap clusters are unowned: leaks, as qemu-img reports.
    b.tail[3] = b.table([8 * 512])
    b.autoclearFeatures = 0
    XCTAssertEqual(Self.count(try Self.check(b), "leaks"), 3)
  }

  func testRefcountOverflow() throws {
    // 9 L2 tables of 8192 compressed entries each, all in one host cluster: 73728 references.
    var b = QCOW2Builder()
    b.clusterBits = 16
    let cs: UInt64 = 1 << 16
    b.refcountTableOffset = cs
    b.l1TableOffset = 3 * cs
    b.size = 9 * 8192 * cs
    b.l1Size = 9
    b.l1Entries = (0..<9).map { (4 + $0) * cs | Self.copied }
    let l2 = b.table([UInt64](repeating: Self.compressedFlag | 13 * cs, count: 8192))
    b.tail = [[UInt8]](repeating: l2, count: 9) + [[UInt8](repeating: 1, count: 512)]
    for k: UInt64 in 0..<14 { b.refcounts[k] = 1 }
    let r = try Self.check(b)
    XCTAssertTrue(Self.ids(r).contains("qcow2.refcount-overflow"), "\(Self.ids(r))")
    XCTAssertTrue(Self.ids(r).contains("qcow2.refcount-mismatch"))
  }

  func testCheckLimitAndSeekable() throws {
    // A stream keeps its head (at least the 64 KiB every probe reads); the image is padded to it.
    let head = 64 << 10
    var bytes = Self.withData().build()
    bytes += [UInt8](repeating: 0, count: head - bytes.count)
    // A declared length with more host clusters than the check keeps refcounts for.
    let huge = MemorySource(bytes, name: "stream", declaredSize: 1 << 40)
    let ctx = try ProbeContext(source: huge)
    let info = try XCTUnwrap(try QCOW2Probe.probe(ctx))
    let r = QCOW2Probe.deepCheck(ctx, info)
    XCTAssertTrue(Self.ids(r).contains("qcow2.check-limit"), "\(r.findings.map(\.message))")
    XCTAssertNil(r.counts.json["leaks"])
    // An L2 table the stream no longer holds: a check error, not a guess.
    var b = Self.withData()
    b.l1Entries = [256 * 512 | Self.copied]
    var far = b.build()
    far += [UInt8](repeating: 0, count: head - far.count)
    let partial = MemorySource(far, name: "stream", declaredSize: 512 << 10)
    let pctx = try ProbeContext(source: partial)
    let pinfo = try XCTUnwrap(try QCOW2Probe.probe(pctx))
    let p = QCOW2Probe.deepCheck(pctx, pinfo)
    XCTAssertTrue(Self.ids(p).contains("qcow2.check-error"), "\(p.findings.map(\.message))")
    XCTAssertGreaterThan(Self.count(p, "check-errors") ?? 0, 0)
  }

  /// 32768 L1 entries naming one L2 table of 8192 data entries: 2^28 references that QEMU scans
  /// one by one. The check scans the table once and credits it 32768 times.
  func testSharedL2TableIsScannedOnce() throws {
    var b = QCOW2Builder()
    b.clusterBits = 16
    let cs: UInt64 = 1 << 16
    b.refcountTableOffset = cs
    b.l1TableOffset = 3 * cs
    b.l1Size = 32768
    b.size = 32768 * 8192 * cs
    var bytes = b.build()  // header, refcount table, refcount block, (unused) cluster 3
    bytes.replaceSubrange(40..<48, with: QCOW2Builder.be64(4 * cs))  // l1_table_offset: the L1 spans 4 clusters
    for _ in 0..<32768 { bytes += QCOW2Builder.be64(8 * cs | Self.copied) }
    bytes += b.table([UInt64](repeating: 9 * cs | Self.copied, count: 8192))
    bytes += [UInt8](repeating: 1, count: Int(cs))
    let start = Date()
    let r = try QCOWCheckTests.deepCheck(bytes)
    XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    XCTAssertEqual(Self.count(r, "allocated-clusters"), 1 << 28)
    XCTAssertTrue(Self.ids(r).contains("qcow2.l1-entry"))
    XCTAssertTrue(Self.ids(r).contains("qcow2.refcount-overflow"))
  }

  func testCryptoHeaderKeyMaterial() throws {
    // A 2 KiB LUKS area whose key slot 0 material (at 4 KiB, 250 KiB long) lies outside it.
    var b = QCOW2Builder()
    b.cryptMethod = 2
    b.extensions = [(0x0537_be77, QCOW2Builder.be64(4 * 512) + QCOW2Builder.be64(2048))]
    for k: UInt64 in 4...7 { b.refcounts[k] = 1 }
    let luks = QCOWFamilyBuilders.luks1(payloadSectors: 4, fileSize: 2048)
    b.tail = stride(from: 0, to: 2048, by: 512).map { Array(luks[$0..<($0 + 512)]) }
    let r = try Self.check(b)
    XCTAssertTrue(Self.ids(r).contains("qcow2.crypto-header"), "\(r.findings.map(\.message))")
  }

  func testMalformedHeaderIsAFinding() throws {
    var bytes = Self.withData().build()
    bytes.replaceSubrange(20..<24, with: QCOW2Builder.be32(30))  // cluster_bits
    let ctx = try ProbeContext(source: MemorySource(bytes))
    let info = ImageInfo(probe: "qcow2", qemuFormat: "qcow2", diskFormat: .qcow2)
    let r = QCOW2Probe.deepCheck(ctx, info)
    XCTAssertEqual(r.findings.map(\.id), ["qcow2.cluster-bits"])
  }
}

/// LUKS deep checks: real headers from cryptsetup and QEMU are clean; edited ones are not.
final class QCOWLUKSCheckTests: XCTestCase {
  static func check(_ bytes: [UInt8]) throws -> CheckReport {
    let ctx = try ProbeContext(source: MemorySource(bytes, name: "luks"))
    let info = try XCTUnwrap(try LUKSProbe.probe(ctx))
    return LUKSProbe.deepCheck(ctx, info)
  }

  func testFixturesAreClean() throws {
    for file in ["qemu.luks", "luks1.img", "luks2.img", "luks2-argon.img"] {
      let path = try Fixtures.path("qcow", file)
      let ctx = try ProbeContext(source: FileSource(path: path))
      let info = try XCTUnwrap(try LUKSProbe.probe(ctx))
      let r = LUKSProbe.deepCheck(ctx, info)
      XCTAssertEqual(r.findings.map(\.id), [], "\(file): \(r.findings.map(\.message))")
    }
  }

  func testLUKS2ChecksumAndSecondHeader() throws {
    let path = try Fixtures.path("qcow", "luks2.img")
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)).prefix(6 << 20))
    // Shorten the file to a few MiB but keep the declared layout: only the headers are read.
    let hdr = Int(UInt64(bytes[8]) << 56 | UInt64(bytes[9]) << 48 | UInt64(bytes[10]) << 40 | UInt64(bytes[11]) << 32
      | UInt64(bytes[12]) << 24 | UInt64(bytes[13]) << 16 | UInt64(bytes[14]) << 8 | UInt64(bytes[15]))
    // One changed character in the JSON area (inside the label-free padding after the JSON).
    var edited = bytes
    edited[hdr - 1] ^= 0x20
    let fullPath = try Fixtures.path("qcow", "luks2.img")
    let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: fullPath)[.size] as? Int)
    edited += [UInt8](repeating: 0, count: max(0, size - edited.count))
    bytes += [UInt8](repeating: 0, count: max(0, size - bytes.count))
    XCTAssertEqual(try Self.check(bytes).findings.map(\.id), [])
    let r = try Self.check(edited)
    XCTAssertEqual(r.findings.map(\.id), ["luks.header-checksum"], "\(r.findings.map(\.message))")
    // The second copy destroyed.
    var noSecond = bytes
    noSecond[hdr] = 0
    XCTAssertEqual(try Self.check(noSecond).findings.map(\.id), ["luks.header"])
  }

  func testLUKS1KeySlots() throws {
    // Payload at 2 MiB, slot 0 material at sector 8: 64 * 4000 bytes = 500 sectors.
    XCTAssertEqual(try Self.check(QCOWFamilyBuilders.luks1(payloadSectors: 4096)).findings.map(\.id), [])
    // Payload right after the header: the key material runs into it.
    XCTAssertEqual(try Self.check(QCOWFamilyBuilders.luks1(payloadSectors: 100, fileSize: 1 << 20)).findings.map(\.id), ["luks.key-slot"])
    // A file cut inside the key material.
    XCTAssertEqual(try Self.check(QCOWFamilyBuilders.luks1(payloadSectors: 0, fileSize: 8192)).findings.map(\.id), ["luks.truncated"])
    // Two active slots sharing material.
    var two = QCOWFamilyBuilders.luks1(payloadSectors: 4096)
    two.replaceSubrange((208 + 48)..<(208 + 52), with: QCOWFamilyBuilders.be32(0x00ac71f3))
    two.replaceSubrange((208 + 48 + 40)..<(208 + 48 + 44), with: QCOWFamilyBuilders.be32(8))
    XCTAssertEqual(try Self.check(two).findings.map(\.id), ["luks.key-slot"])
  }
}

/// QED deep check on hand-built images: header cluster, L1 at cluster 1, L2 at 2, data at 3.
final class QCOWQEDCheckTests: XCTestCase {
  static func image(l1: UInt64 = 2 * 4096, l2: [UInt64] = [3 * 4096], clusters: Int = 4) -> [UInt8] {
    var b = Array(QCOWFamilyBuilders.qed().prefix(2 * 4096))
    b.replaceSubrange(4096..<4104, with: QCOWFamilyBuilders.le64(l1))
    var table = [UInt8](repeating: 0, count: 4096)
    for (i, e) in l2.enumerated() { table.replaceSubrange(i * 8..<(i * 8 + 8), with: QCOWFamilyBuilders.le64(e)) }
    b += table
    b += [UInt8](repeating: 0x5a, count: max(0, clusters - 3) * 4096)
    return b
  }

  static func check(_ bytes: [UInt8]) throws -> CheckReport {
    let ctx = try ProbeContext(source: MemorySource(bytes, name: "qed"))
    return QEDProbe.deepCheck(ctx, try XCTUnwrap(try QEDProbe.probe(ctx)))
  }

  func testValid() throws {
    let r = try Self.check(Self.image())
    XCTAssertEqual(r.findings.map(\.id), [])
    XCTAssertEqual(r.counts.json["allocated-clusters"]?.uint, 1)
    XCTAssertEqual(r.counts.json["leaks"]?.uint, 0)
  }

  func testFindings() throws {
    XCTAssertEqual(try Self.check(Self.image(l1: 2 * 4096 + 8)).findings.map(\.id), ["qed.l1-entry", "qed.leaked-clusters"])
    XCTAssertEqual(try Self.check(Self.image(l2: [1 << 40])).findings.map(\.id), ["qed.l2-entry", "qed.leaked-clusters"])
    XCTAssertEqual(try Self.check(Self.image(l2: [3 * 4096, 3 * 4096])).findings.map(\.id), ["qed.cluster-reused"])
    XCTAssertEqual(try Self.check(Self.image(l2: [4096])).findings.map(\.id), ["qed.cluster-reused", "qed.leaked-clusters"])
    let leak = try Self.check(Self.image(clusters: 6))
    XCTAssertEqual(leak.findings.map(\.id), ["qed.leaked-clusters"])
    XCTAssertEqual(leak.counts.json["leaks"]?.uint, 2)
    // A stream that no longer holds the L2 table, and one too long to track.
    var padded = Self.image()
    padded[4096 + 8..<4096 + 16] = ArraySlice(QCOWFamilyBuilders.le64(40 * 4096))
    padded += [UInt8](repeating: 0, count: (64 << 10) - padded.count)
    let sctx = try ProbeContext(source: MemorySource(padded, name: "stream", declaredSize: 1 << 20))
    let stream = QEDProbe.deepCheck(sctx, try XCTUnwrap(try QEDProbe.probe(sctx)))
    XCTAssertTrue(stream.findings.map(\.id).contains("qed.check-error"), "\(stream.findings.map(\.message))")
    let hctx = try ProbeContext(source: MemorySource(padded, name: "stream", declaredSize: 1 << 41))
    let huge = QEDProbe.deepCheck(hctx, try XCTUnwrap(try QEDProbe.probe(hctx)))
    XCTAssertTrue(huge.findings.map(\.id).contains("qed.check-limit"), "\(huge.findings.map(\.message))")
    // The L2 table cut off by the end of the file.
    let cut = try Self.check(Array(Self.image().prefix(2 * 4096 + 100)))
    XCTAssertTrue(cut.findings.contains { $0.id == "qed.l1-entry" || $0.id == "qed.truncated" }, "\(cut.findings.map(\.message))")
  }
}
