import Foundation
import XCTest
@testable import FormatProbe

/// What every fuzz target does with one input, for tests: detect with every probe, deep-check the
/// identified image, render both reports, and parse the JSON back.
enum FuzzExercise {
  struct Outcome {
    var format: String
    var seconds: Double
  }

  static let repoRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  /// Runs `source` through Inspector, the matching deep check and both renderers. Fails the test
  /// (with `label`) when the JSON does not round-trip; a trap would crash the test process.
  @discardableResult
  static func run(_ source: ByteSource, label: String, deepCheck: Bool = true,
                  file: StaticString = #filePath, line: UInt = #line) -> Outcome
  {
    let start = DispatchTime.now().uptimeNanoseconds
    let result = Inspector.inspect(source)
    var report = InfoReport(filename: label, result: result)
    if deepCheck, let info = result.info {
      // As `imgtool check` runs it (deep check, policy), plus every destination's rules.
      var options = CheckOptions()
      options.expectFormat = info.diskFormat.rawValue
      options.maxVirtualSize = 1 << 40
      let extra = Checker.run(source, result, options)
      report.extraFindings += extra.findings
      report.checkCounts = extra.counts
      for target in Target.allCases {
        report.extraFindings += TargetRules.evaluate(target, result: result, declared: info.diskFormat.rawValue)
      }
    }
    let value = report.json
    let json = value.rendered()
    let text = report.text
    do {
      let parsed = try JSONParser.parse(json, format: "report")
      XCTAssertEqual(parsed, value, "\(label): the rendered JSON does not parse back to the same value", file: file, line: line)
    } catch {
      XCTFail("\(label): the rendered JSON does not parse: \(error)\n\(json)", file: file, line: line)
    }
    XCTAssertFalse(text.isEmpty, "\(label): empty text report", file: file, line: line)
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    var format = "?"
    switch result.outcome {
    case let .identified(i): format = i.probe
    case .ambiguous: format = "ambiguous"
    case .malformed: format = "malformed"
    case .needsSeekable: format = "needs-seekable"
    }
    return Outcome(format: format, seconds: seconds)
  }

  /// Files committed next to the fixture generators (hand-built hostile images), not the generated ones.
  static var committedFixtures: [URL] {
    let root = repoRoot.appendingPathComponent("Tests/Fixtures/images")
    let fm = FileManager.default
    var out: [URL] = []
    for group in ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).sorted() where group != "generated" {
      let dir = root.appendingPathComponent(group)
      for name in ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
      where isInput(name) {
        let url = dir.appendingPathComponent(name)
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue { out.append(url) }
      }
    }
    return out
  }

  /// Minimised fuzzer findings in `fuzz/regressions/`.
  static var regressions: [URL] {
    let dir = repoRoot.appendingPathComponent("fuzz/regressions")
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    return names.filter(isInput).map { dir.appendingPathComponent($0) }
  }

  static func isInput(_ name: String) -> Bool {
    !name.hasPrefix(".") && name != "make.sh" && name != "manifest.json" && !name.hasSuffix(".md")
  }
}

/// Every input that ever crashed, leaked or hung a fuzz target, and every committed hostile
/// fixture: each must go through detection, deep checks and both renderers without a trap, as a
/// file, in memory (as the fuzzer sees it) and as the head of a longer stream, and quickly.
final class FuzzRegressionTests: XCTestCase {
  /// Generous for a debug build; a hostile image that takes longer is a denial of service.
  static let secondsPerInput = 5.0

  func testRegressionsAndHostileFixtures() throws {
    let inputs = FuzzExercise.regressions + FuzzExercise.committedFixtures
    var slowest = (name: "", seconds: 0.0)
    for url in inputs {
      let name = url.path.replacingOccurrences(of: FuzzExercise.repoRoot.path + "/", with: "")
      let file = try FileSource(path: url.path)
      let bytes = try Array(Data(contentsOf: url))
      let runs = [
        FuzzExercise.run(file, label: name),
        FuzzExercise.run(MemorySource(bytes, name: name), label: name + " (memory)"),
        FuzzExercise.run(MemorySource(bytes, name: name, declaredSize: UInt64(bytes.count) * 2 + 512),
                         label: name + " (stream head)", deepCheck: false),
      ]
      for r in runs where r.seconds > slowest.seconds { slowest = (name, r.seconds) }
      XCTAssertLessThan(runs.map(\.seconds).max() ?? 0, Self.secondsPerInput, "\(name) is too slow")
    }
    print("FuzzRegressionTests: \(inputs.count) inputs; slowest \(slowest.name) \(String(format: "%.3f", slowest.seconds)) s")
  }

  /// Every generated fixture (valid images made by real tools) as the head of a longer stream:
  /// reads past what a stream keeps must surface as `needs-seekable`, never as a crash.
  func testGeneratedFixturesAsStreamHeads() throws {
    var count = 0
    for group in Fixtures.groups {
      let dir = try Fixtures.directory(group)
      for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted() where !name.hasPrefix(".") {
        let url = dir.appendingPathComponent(name)
        guard let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil,
              size <= 8 << 20, let bytes = try? Array(Data(contentsOf: url)) else { continue }
        let r = FuzzExercise.run(MemorySource(bytes, name: name, declaredSize: UInt64(bytes.count) * 2 + 512),
                                 label: "\(group)/\(name) (stream head)", deepCheck: false)
        XCTAssertLessThan(r.seconds, Self.secondsPerInput, "\(group)/\(name) is too slow")
        count += 1
      }
    }
    print("FuzzRegressionTests: \(count) generated fixtures as stream heads")
  }

  /// Inputs with no structure at all: empty, tiny, all-zero, all-ones, and magic numbers alone.
  func testDegenerateInputs() {
    var inputs: [(String, [UInt8])] = [("empty", []), ("one byte", [0]), ("zeros 64K", [UInt8](repeating: 0, count: 65536)),
                                       ("ones 64K+1", [UInt8](repeating: 0xff, count: 65537))]
    let magics: [(String, [UInt8])] = [
      ("qcow2", [0x51, 0x46, 0x49, 0xfb]), ("qed", Array("QED\0".utf8)), ("luks", [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]),
      ("vhd", Array("conectix".utf8)), ("vhdx", Array("vhdxfile".utf8)), ("vmdk", Array("KDMV".utf8)),
      ("vmdk-descriptor", Array("# Disk DescriptorFile\n".utf8)), ("ploop", Array("WithoutFreeSpace".utf8)),
      ("gzip", [0x1f, 0x8b, 0x08]), ("xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), ("zstd", [0x28, 0xb5, 0x2f, 0xfd]),
      ("ovf", Array("<?xml version=\"1.0\"?><Envelope>".utf8)),
    ]
    for (name, magic) in magics {
      inputs.append((name + " magic alone", magic))
      inputs.append((name + " magic + zeros", magic + [UInt8](repeating: 0, count: 4096 - magic.count)))
      inputs.append((name + " magic + ones", magic + [UInt8](repeating: 0xff, count: 4096 - magic.count)))
    }
    // Magic at the places formats look: ISO volume descriptor, VHD footer at the end, GPT at LBA 1.
    var iso = [UInt8](repeating: 0xff, count: 0x8800)
    iso.replaceSubrange(0x8001..<0x8006, with: Array("CD001".utf8))
    inputs.append(("iso descriptor + ones", iso))
    inputs.append(("vhd footer at end", [UInt8](repeating: 0xff, count: 1024) + Array("conectix".utf8) + [UInt8](repeating: 0xff, count: 504)))
    var gpt = [UInt8](repeating: 0, count: 4096)
    gpt[510] = 0x55; gpt[511] = 0xaa
    gpt.replaceSubrange(512..<520, with: Array("EFI PART".utf8))
    for i in 520..<1024 { gpt[i] = 0xff }
    inputs.append(("gpt header + ones", gpt))
    for (name, bytes) in inputs {
      let r = FuzzExercise.run(MemorySource(bytes, name: name), label: name)
      XCTAssertLessThan(r.seconds, Self.secondsPerInput, name)
    }
  }
}
