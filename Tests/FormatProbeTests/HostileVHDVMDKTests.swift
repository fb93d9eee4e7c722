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
    } catch {
      let e = error
      XCTAssertEqual(e.finding, "vhdx.header-conflict")
      XCTAssertEqual(e.offset, 0x20008)
    }
  }

  /// A VHDX log whose one valid entry hides behind 65 decoy "loge" sectors with bad CRCs: the
  /// bounded scan gave up and called the log empty (safe), but qemu searches the whole log and
  /// replays the entry. Giving up is now unsafe, since the log could not be verified.
  func testVHDXLogEntryBehindDecoys() throws {
    var b = VHDXBuilder()
    b.headers[0].logGUID = msGUID("99999999-8888-7777-6666-555555555555")
    b.headers[1].logGUID = b.headers[0].logGUID
    b.logEntry = true
    var bytes = b.bytes
    let log = 1 << 20
    let entry = Array(bytes[log..<(log + 4096)])
    for i in 0..<65 {
      var decoy = entry
      decoy[4] ^= 0xff  // a CRC that does not match
      bytes.replaceSubrange((log + i * 4096)..<(log + (i + 1) * 4096), with: decoy)
    }
    bytes.replaceSubrange((log + 65 * 4096)..<(log + 66 * 4096), with: entry)
    let info = try XCTUnwrap(try VHDXProbe.probe(ProbeContext(source: MemorySource(bytes))))
    let f = try XCTUnwrap(info.findings.first { $0.id == "vhdx.log-not-replayed" })
    XCTAssertEqual(f.severity, .unsafe, f.message)
    XCTAssertEqual(Policy().verdict(info.findings), .unsafe)
  }

  /// `imgtool check -` on a VDI whose block map lies past what a stream keeps: the deep check's
  /// read was refused, reported as a warning under vdi.block-map-truncated, and the verdict was
  /// safe with exit 0 although the map was never read. It is now input.needs-seekable (exit 5).
  func testStreamedDeepCheckThatNeedsSeekingIsNotSafe() throws {
    var b = VDIBuilder()
    b.blocksInHDD = 100_000
    b.map = [0] + [UInt32](repeating: 0xffff_ffff, count: 99_999)
    b.offsetData = 0x200 + 400_384
    let bytes = b.image()
    var fds: [Int32] = [0, 0]
    XCTAssertEqual(pipe(&fds), 0)
    let writeEnd = fds[1]
    let writer = Thread {
      bytes.withUnsafeBytes { Syscalls.writeAll(fd: writeEnd, $0) }
      close(writeEnd)
    }
    writer.start()
    let source = try StreamSource(fd: fds[0], headLimit: 70_000, tailLimit: 500)
    close(fds[0])
    let result = Inspector.inspect(source)
    XCTAssertEqual(result.info?.probe, "vdi")
    let ids = Checker.run(source, result, CheckOptions()).findings.map(\.id)
    XCTAssertTrue(ids.contains("input.needs-seekable"), "\(ids)")
    XCTAssertFalse(ids.contains("vdi.block-map-truncated"), "\(ids)")
  }
}
