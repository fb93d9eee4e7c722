import XCTest
@testable import FormatProbe

/// Regression tests for hostile VHD, VHDX, VMDK, VDI and ploop images: each committed file in
/// `Tests/Fixtures/images/hostile/` once got a wrong verdict from `imgtool check` (deep checks
/// included), a crash or an unbounded run. Each test names the attack.
final class HostileVHDVMDKTests: XCTestCase {
  /// `imgtool check`'s verdict and findings for a committed hostile file, computed as the CLI does.
  func check(_ file: String) throws -> (verdict: Verdict, ids: [String]) {
    let path = Fixtures.root.appendingPathComponent("hostile/\(file)").path
    let source = try FileSource(path: path)
    var report = InfoReport(filename: path, result: Inspector.inspect(source))
    let extra = Checker.run(source, report.result, CheckOptions())
    report.extraFindings = extra.findings
    report.checkCounts = extra.counts
    let ids = (report.result.allFindings + extra.findings).map(\.id)
    return (report.verdict, ids)
  }

  /// A monolithicSparse VMDK cut 100 bytes short of its last grain: the grain's sector is in the
  /// file, but its last bytes would read as zeros.
  func testLastGrainCutShort() throws {
    let r = try check("vmdk-last-grain-cut.vmdk")
    XCTAssertEqual(r.verdict, .corrupt)
    XCTAssertTrue(r.ids.contains("vmdk.grain-out-of-range"), "\(r.ids)")
  }

  /// Both VHDX headers valid with one sequence number but different contents: no header is
  /// current (qemu-img refuses the file), yet the probe used to pick one and call it safe.
  func testVHDXTwinHeadersThatDisagree() throws {
    var b = VHDXBuilder()
    b.headers = [VHDXBuilder.Header(sequence: 11), VHDXBuilder.Header(sequence: 11)]
    // Identical twins (as Disk2VHD writes them) are fine.
    XCTAssertEqual(try VHDXProbe.probe(ProbeContext(source: MemorySource(b.bytes)))?.findings, [])
    b.headers[0].logOffset = 8 << 20
    do {
      _ = try VHDXProbe.probe(ProbeContext(source: MemorySource(b.bytes)))
      XCTFail("expected vhdx.header-conflict")
    } catch let e as ImageError {
      XCTAssertEqual(e.finding, "vhdx.header-conflict")
      XCTAssertEqual(e.offset, 0x20008)
    }
  }
}
