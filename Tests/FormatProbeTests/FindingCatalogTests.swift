import Foundation
import XCTest

/// Every finding identifier written in the sources must be documented in docs/formats.md and
/// exercised by at least one test (a test names it when it triggers it).
final class FindingCatalogTests: XCTestCase {
  static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  static func files(under dir: String, ext: String) -> [URL] {
    let base = repo.appendingPathComponent(dir)
    guard let e = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else { return [] }
    return e.compactMap { $0 as? URL }.filter { $0.pathExtension == ext }
  }

  /// Literal ids: `Finding("fmt.name"` and `finding: "fmt.name"`.
  static func sourceIDs() -> Set<String> {
    let pattern = try! NSRegularExpression(pattern: #"(?:Finding\(\s*|finding:\s*|id:\s*)"([a-z0-9]+\.[a-z0-9.-]+)""#)
    var ids = Set<String>()
    for f in files(under: "Sources", ext: "swift") {
      guard let text = try? String(contentsOf: f, encoding: .utf8) else { continue }
      let range = NSRange(text.startIndex..., in: text)
      for m in pattern.matches(in: text, range: range) {
        if let r = Range(m.range(at: 1), in: text) { ids.insert(String(text[r])) }
      }
    }
    return ids
  }

  func testEveryFindingIsDocumented() throws {
    let docs = try String(contentsOf: FindingCatalogTests.repo.appendingPathComponent("docs/formats.md"), encoding: .utf8)
    let missing = FindingCatalogTests.sourceIDs().filter { !docs.contains($0) }.sorted()
    XCTAssertEqual(missing, [], "finding ids not in docs/formats.md")
  }

  func testEveryFindingIsExercisedByATest() throws {
    var tests = ""
    for f in FindingCatalogTests.files(under: "Tests", ext: "swift") + FindingCatalogTests.files(under: "Tests/Fixtures", ext: "json") {
      tests += (try? String(contentsOf: f, encoding: .utf8)) ?? ""
    }
    let missing = FindingCatalogTests.sourceIDs().filter { !tests.contains("\"\($0)\"") }.sorted()
    XCTAssertEqual(missing, [], "finding ids no test names")
  }
}
