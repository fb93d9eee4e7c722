import XCTest
@testable import FormatProbe

/// Every fixture group's manifest: imgtool's answer must match the expected values, and
/// `qemu-img info` (the oracle) must agree wherever the entry names a qemu driver.
final class FixtureManifestTests: XCTestCase {
  func testEveryManifestEntry() throws {
    var checked = 0
    for group in Fixtures.groups {
      for entry in try Fixtures.manifest(group) {
        let path = try Fixtures.path(group, entry.file)
        let got = try Fixtures.info(path)
        for (key, want) in entry.expect {
          XCTAssertEqual(got.at(key), want, "\(group)/\(entry.file): \(key)")
        }
        if let verdict = entry.verdict {
          XCTAssertEqual(got["verdict"]?.string, verdict, "\(group)/\(entry.file): verdict \(got["findings"]?.rendered(pretty: false) ?? "")")
        }
        try checkTargets(entry, path: path, label: "\(group)/\(entry.file)")
        checked += 1
      }
    }
    XCTAssertGreaterThan(checked, 0, "no fixture manifests found under \(Fixtures.root.path)")
  }

  /// `"targets": {"esxi": ["esxi.ova-manifest"]}`: the target's own finding ids for this image,
  /// declared as the entry's expected disk-format (what a pipeline would tell the service).
  func checkTargets(_ entry: Fixtures.Entry, path: String, label: String) throws {
    guard case let .object(targets)? = entry.raw["targets"] else { return }
    let source = try FileSource(path: path)
    let result = Inspector.inspect(source)
    for (name, ids) in targets {
      guard let target = Target(rawValue: name) else { XCTFail("\(label): unknown target \(name)"); continue }
      var options = CheckOptions()
      options.headerOnly = true
      options.target = target
      options.expectFormat = entry.expect.first { $0.0 == "disk-format" }?.1.string
      let got = Checker.run(source, result, options).findings.map(\.id).filter { $0.hasPrefix(name + ".") }
      XCTAssertEqual(Set(got), Set(ids.array?.compactMap(\.string) ?? []), "\(label): --target \(name)")
    }
  }

  func testQemuImgOracle() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    var compared = 0
    for group in Fixtures.groups {
      for entry in try Fixtures.manifest(group) {
        guard let driver = entry.qemu else { continue }
        let path = try Fixtures.path(group, entry.file)
        let ours = try Fixtures.info(path)
        let theirs = try Fixtures.qemuInfo(path, format: driver)
        let differs = Dictionary(entry.qemuDiffers.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        for key in ["virtual-size"] + entry.qemuKeys {
          if let expectedQemu = differs[key] {
            // qemu-img is known to be wrong here; the manifest says what it reports and why ours differs.
            XCTAssertEqual(theirs.at(key), expectedQemu, "\(group)/\(entry.file): qemu-img's \(key) changed")
          } else {
            XCTAssertEqual(ours.at(key), theirs.at(key), "\(group)/\(entry.file): \(key) differs from qemu-img")
          }
        }
        compared += 1
      }
    }
    XCTAssertGreaterThan(compared, 0)
  }
}
