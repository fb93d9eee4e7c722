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
}
