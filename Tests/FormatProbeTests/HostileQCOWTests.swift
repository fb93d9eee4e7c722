import Foundation
import XCTest
@testable import FormatProbe

/// Hostile-uploader attacks on the qcow2 family that once got through: each test builds the
/// attack image in memory and asserts the clean answer.
final class HostileQCOWTests: XCTestCase {
  static func put(_ bytes: inout [UInt8], _ at: Int, _ value: [UInt8]) {
    if bytes.count < at + value.count { bytes += [UInt8](repeating: 0, count: at + value.count - bytes.count) }
    bytes.replaceSubrange(at..<(at + value.count), with: value)
  }

  /// 400 snapshots whose L1 tables (4096 entries each) lie over one another in a 64 KiB file:
  /// 12 MiB of "tables" the check used to read, sort and count one by one (a time bomb that grows
  /// with the snapshot count). Distinct tables never share a cluster, so they are overlapping metadata.
  func testOverlappingSnapshotL1TablesAreBounded() throws {
    var b = QCOW2Builder()
    b.nbSnapshots = 400
    b.snapshotsOffset = 0x2000
    var image = b.build()
    Self.put(&image, 0xffff, [0])
    for k in 0..<400 {
      let entry = QCOW2Builder.be64(UInt64(k % 16) * 512) + QCOW2Builder.be32(UInt32(4096 - k / 16))
        + [UInt8](repeating: 0, count: 28)
      Self.put(&image, 0x2000 + 40 * k, entry)
    }
    let report = try QCOWCheckTests.deepCheck(image)
    XCTAssertTrue(report.findings.contains { $0.id == "qcow2.metadata-overlap" && $0.message.contains("more bytes than the file holds") },
                  "\(report.findings.map(\.message))")
    XCTAssertNil(report.counts.json["leaks"], "refcounts must not be compared once the check stopped")
  }

  /// A full disk encryption extension whose length is above 2^63 trapped on underflow in the range check.
  func testCryptoHeaderLengthAbove2To63() throws {
    var b = QCOW2Builder()
    b.cryptMethod = 2
    b.extensions = [(QCOW2Extension.fullDiskEncryption, QCOW2Builder.be64(0x1000) + QCOW2Builder.be64(UInt64.max))]
    let ctx = try ProbeContext(source: MemorySource(b.build(), name: "fde.qcow2"))
    XCTAssertThrowsError(try QCOW2Probe.probe(ctx)) { error in
      XCTAssertEqual((error as? ImageError)?.field, "crypto header offset")
    }
  }

  /// Bitmap tables laid over one another: the same bound as for L1 tables.
  func testOverlappingBitmapTablesAreBounded() throws {
    var b = QCOW2Builder()
    b.autoclearFeatures = QCOW2Feature.autoclearBitmaps
    let count: UInt32 = 200
    // Directory at 0x2000: 200 entries of 24 bytes + a one-byte name (32 bytes each).
    b.extensions = [(QCOW2Extension.bitmaps, QCOW2Builder.be32(count) + [0, 0, 0, 0] + QCOW2Builder.be64(UInt64(count) * 32)
                      + QCOW2Builder.be64(0x2000))]
    var image = b.build()
    Self.put(&image, 0xffff, [0])
    // 512-entry tables (4 KiB; more than the 1 MiB disk needs, which info reports as qcow2.bitmaps).
    for k in 0..<Int(count) {
      let entry = QCOW2Builder.be64(0x4000 + UInt64(k % 8) * 512) + QCOW2Builder.be32(512) + QCOW2Builder.be32(0)
        + [1, 9] + QCOW2Builder.be16(1) + QCOW2Builder.be32(0) + [0x61] + [UInt8](repeating: 0, count: 7)
      Self.put(&image, 0x2000 + 32 * k, entry)
    }
    let report = try QCOWCheckTests.deepCheck(image)
    XCTAssertTrue(report.findings.contains { $0.id == "qcow2.metadata-overlap" && $0.message.contains("more bytes than the file holds") },
                  "\(report.findings.map(\.message))")
  }
}

/// Truncated downloads: a data cluster cut off by the end of the file is read as zeros by QEMU.
final class HostileQCOWTruncationTests: XCTestCase {
  static let copied: UInt64 = 1 << 63

  func testPartialLastDataCluster() throws {
    let b = QCOWCheckHostileTests.withData()
    let image = b.build()
    XCTAssertEqual(try QCOWCheckTests.deepCheck(image).findings.map(\.id), [])
    // The data cluster (cluster 5) keeps only its first 256 bytes.
    let cut = Array(image[..<(5 * 512 + 256)])
    XCTAssertTrue(try QCOWCheckTests.deepCheck(cut).findings.contains { $0.id == "qcow2.truncated" })
    // A preallocated zero cluster (zero flag) reads as zeros anyway: no finding.
    var zero = QCOWCheckHostileTests.withData()
    zero.tail[0] = zero.table([5 * 512 | Self.copied | 1])
    XCTAssertEqual(try QCOWCheckTests.deepCheck(Array(zero.build()[..<(5 * 512 + 256)])).findings.map(\.id), [])
  }

  func testPartialLastCompressedCluster() throws {
    var b = QCOWCheckHostileTests.withData()
    // Compressed descriptor at 512-byte clusters: offset in bits 0..60, one more sector above.
    b.tail[0] = b.table([QCOWCheckHostileTests.compressedFlag | (1 << 61) | 5 * 512])
    b.tail[1] = [UInt8](repeating: 0x5a, count: 1024)
    b.refcounts[6] = 1
    let image = b.build() + [UInt8](repeating: 0x5a, count: 512)
    XCTAssertEqual(try QCOWCheckTests.deepCheck(image).findings.map(\.id), [])
    // Less than a sector short: the sector count rounds up, accepted as QEMU does.
    XCTAssertEqual(try QCOWCheckTests.deepCheck(Array(image[..<(6 * 512 + 100)])).findings.map(\.id), [])
    // Half the compressed data gone.
    let cut = try QCOWCheckTests.deepCheck(Array(image[..<(5 * 512 + 100)]))
    XCTAssertTrue(cut.findings.contains { $0.id == "qcow2.truncated" }, "\(cut.findings.map(\.message))")
  }

  func testExtendedL2PartialClusterWithUnallocatedSubclusters() throws {
    var b = QCOWCheckHostileTests.withData(bits: 14)
    b.incompatibleFeatures = QCOW2Feature.extendedL2
    let cs: UInt64 = 1 << 14
    // Only subcluster 0 (512 bytes) allocated, as QEMU leaves a 4 KiB write at the end of the file.
    b.tail[0] = b.table([5 * cs | Self.copied, 1])
    let image = b.build()
    XCTAssertEqual(try QCOWCheckTests.deepCheck(Array(image[..<(5 * Int(cs) + 512)])).findings.map(\.id), [])
    XCTAssertTrue(try QCOWCheckTests.deepCheck(Array(image[..<(5 * Int(cs) + 256)])).findings.contains { $0.id == "qcow2.truncated" })
  }

  /// QED: QEMU writes whole data clusters, so one cut off at the end of the file is truncated.
  func testQEDPartialLastDataCluster() throws {
    let full = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("qcow", "data.qed"))))
    func check(_ bytes: [UInt8]) throws -> [String] {
      let ctx = try ProbeContext(source: MemorySource(bytes, name: "data.qed"))
      let info = try XCTUnwrap(QEDProbe.probe(ctx))
      return QEDProbe.deepCheck(ctx, info).findings.map(\.id)
    }
    XCTAssertFalse(try check(full).contains("qed.truncated"))
    XCTAssertTrue(try check(Array(full.dropLast(4096))).contains("qed.truncated"))
  }

  /// QED: an L2 entry near 2^64 after an allocated one overflowed the fragmentation count (a trap).
  func testQEDL2EntryNearTheTop() throws {
    var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("qcow", "data.qed"))))
    func le64(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
    let l2 = le64(le64(40))
    let j = try XCTUnwrap((0..<511).first { le64(l2 + 8 * $0) > 1 })
    // Entry j near 2^64, entry j + 1 the allocated cluster entry j named.
    let entry = Array(bytes[(l2 + 8 * j)..<(l2 + 8 * j + 8)])
    bytes.replaceSubrange((l2 + 8 * j)..<(l2 + 8 * j + 16), with: [0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] + entry)
    let ctx = try ProbeContext(source: MemorySource(bytes, name: "data.qed"))
    let info = try XCTUnwrap(QEDProbe.probe(ctx))
    XCTAssertTrue(QEDProbe.deepCheck(ctx, info).findings.contains { $0.id == "qed.l2-entry" })
  }
}

/// LUKS2 JSON metadata games.
final class HostileLUKSTests: XCTestCase {
  /// The real cryptsetup LUKS2 fixture with its JSON text rewritten by `edit` (checksums left stale).
  static func luks2(_ edit: (String) -> String) throws -> [String] {
    var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("qcow", "luks2.img"))))
    let hdrSize = bytes[8..<16].reduce(0) { $0 << 8 | Int($1) }
    let area = Array(bytes[4096..<hdrSize])
    let text = String(decoding: area[..<(area.firstIndex(of: 0) ?? area.count)], as: UTF8.self)
    let edited = Array(edit(text).utf8)
    XCTAssertLessThan(edited.count, area.count)
    bytes.replaceSubrange(4096..<hdrSize, with: edited + [UInt8](repeating: 0, count: area.count - edited.count))
    let ctx = try ProbeContext(source: MemorySource(bytes, name: "luks2.img"))
    let info = try XCTUnwrap(LUKSProbe.probe(ctx))
    return LUKSProbe.deepCheck(ctx, info).findings.filter { $0.id != "luks.header-checksum" }.map(\.id)
  }

  func testDuplicateKeys() throws {
    XCTAssertFalse(try Self.luks2 { $0 }.contains("luks.json"))
    // An empty "keyslots" first: this decoder saw no key slots, cryptsetup (json-c, last wins) the real ones.
    let ids = try Self.luks2 { $0.replacingOccurrences(of: "\"keyslots\":", with: "\"keyslots\":{},\"keyslots\":") }
    XCTAssertTrue(ids.contains("luks.json"), "\(ids)")
  }

  func testFixedSegmentBeyondTheFile() throws {
    XCTAssertFalse(try Self.luks2 { $0 }.contains("luks.truncated"))
    let ids = try Self.luks2 { $0.replacingOccurrences(of: "\"size\":\"dynamic\"", with: "\"size\":\"18446744073709551615\"") }
    XCTAssertTrue(ids.contains("luks.truncated"), "\(ids)")
  }
}

