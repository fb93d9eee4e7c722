import XCTest
@testable import FormatProbe

/// The qcow2 deep check: counts agree with `qemu-img check` on real images, and every finding id
/// has a hostile image that triggers it and valid images that must not.
final class QCOWCheckTests: XCTestCase {
  static let validFixtures = ["v2.qcow2", "v3.qcow2", "c512.qcow2", "c2m.qcow2", "lazy.qcow2", "rc1.qcow2", "rc16.qcow2",
                              "rc64.qcow2", "el2.qcow2", "zstd.qcow2", "compressed.qcow2", "compressed-zstd.qcow2",
                              "overlay.qcow2", "datafile.qcow2", "enc.qcow2", "snap.qcow2", "bitmap.qcow2"]
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
    for file in Self.validFixtures + ["leak.qcow2", "refcount-zero.qcow2"] {
      let path = try Fixtures.path("qcow", file)
      let ours = try Self.deepCheck(path).counts.json
      let theirs = try XCTUnwrap(Self.qemuCheck(path), file)
      for key in Self.qemuCountKeys {
        // qemu-img leaves out zero counters.
        XCTAssertEqual(ours[key]?.uint, theirs[key]?.uint ?? 0, "\(file): \(key)")
      }
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
  }
}
