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
