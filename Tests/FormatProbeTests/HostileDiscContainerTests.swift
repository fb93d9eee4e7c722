import Foundation
import XCTest
@testable import FormatProbe

/// Hostile inputs against the disc (ISO, partition tables, filesystems) and container (tar, OVA,
/// compressed) probes that are easier to build in code than to commit as fixtures.
final class HostileDiscContainerTests: XCTestCase {
  func inspect(_ bytes: [UInt8]) -> InspectionResult { Inspector.inspect(MemorySource(bytes)) }

  /// A descriptor and the disk it names.
  func plainOVA() -> [UInt8] {
    var t = TarBuilder()
    t.file("app.ovf", Array(OVATests.ovfText.utf8))
    t.file("disk.img", OVATests.disk)
    t.finish()
    return t.bytes
  }

  /// An OVA nested in OVAs past the depth limit: the innermost members are never probed, so the
  /// answer is unsafe (ova.depth-limit), not a silent note.
  func testOVANestedPastDepthLimitIsUnsafe() throws {
    var inner = plainOVA()
    for _ in 0..<4 {
      var t = TarBuilder()
      t.file("nested.ova", inner)
      t.finish()
      inner = t.bytes
    }
    let all = inspect(inner).allFindings
    XCTAssertTrue(all.contains { $0.id == "ova.depth-limit" && $0.severity == Severity.unsafe }, "\(all.map { $0.id })")
  }

  /// Two levels of nesting stay within the limit and carry no depth finding (no false positive).
  func testOVANestedWithinDepthLimitHasNoDepthFinding() throws {
    var t = TarBuilder()
    t.file("nested.ova", plainOVA())
    t.finish()
    let all = inspect(t.bytes).allFindings
    XCTAssertFalse(all.contains { $0.id == "ova.depth-limit" }, "\(all.map { $0.id })")
  }

  /// An x86 bzImage setup header: 1 setup sector after the boot sector, `syssize` paragraphs of
  /// protected-mode kernel after them.
  func bzImage(fileSize: Int) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: fileSize)
    b[0x1f1] = 1                                  // setup_sects
    b[0x1f4] = 0x00; b[0x1f5] = 0x01              // syssize 0x100 paragraphs = 4096 bytes
    b[0x1fe] = 0x55; b[0x1ff] = 0xaa              // boot flag
    b.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
    b[0x206] = 0x0f; b[0x207] = 0x02              // boot protocol 2.15
    b[0x211] = 0x01                               // loadflags: LOADED_HIGH (bzImage)
    return b
  }

  /// A kernel cut inside its protected-mode part (setup + syssize beyond the file) is truncated;
  /// it was safe because only the setup sectors were checked.
  func testBzImageShorterThanSyssizeIsTruncated() throws {
    let cut = try XCTUnwrap(inspect(bzImage(fileSize: 1024 + 100)).info)
    XCTAssertEqual(cut.probe, "aki")
    XCTAssertTrue(cut.findings.contains { $0.id == "aki.truncated" && $0.severity == .corrupt }, "\(cut.findings)")
    let whole = try XCTUnwrap(inspect(bzImage(fileSize: 1024 + 4096)).info)
    XCTAssertFalse(whole.findings.contains { $0.id == "aki.truncated" }, "\(whole.findings)")
  }

  /// A UDF anchor whose main volume descriptor sequence lies beyond the file was skipped silently;
  /// a UDF reader (Windows prefers UDF on bridge discs) cannot mount such a volume.
  func testUDFAnchorPointingBeyondTheFileIsReported() throws {
    var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("disc", "udf-bridge.iso"))))
    let anchor = 256 * 2048
    XCTAssertFalse(Inspector.inspect(MemorySource(b)).allFindings.contains { $0.id == "iso.udf-anchor" })
    b.replaceSubrange((anchor + 20)..<(anchor + 24), with: [0xff, 0xff, 0xff, 0xff])  // main sequence location
    let all = Inspector.inspect(MemorySource(b)).allFindings
    XCTAssertTrue(all.contains { $0.id == "iso.udf-anchor" && $0.field == "main volume descriptor sequence location" }, "\(all)")
  }
}
