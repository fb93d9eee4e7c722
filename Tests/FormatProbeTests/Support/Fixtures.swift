import Foundation
import XCTest
@testable import FormatProbe

/// Fixture groups live in `Tests/Fixtures/images/<group>/`: a `make.sh OUTDIR` generator that
/// produces real images with real tools (qemu-img, xorriso, sfdisk, ...), and a `manifest.json`
/// of expected answers. Images are generated at test time into `Tests/Fixtures/images/generated/`
/// (ignored by git), once per test process, so the repository stays small.
enum Fixtures {
  static let root: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/images")

  static let lock = NSLock()
  nonisolated(unsafe) static var made: [String: URL] = [:]

  static var groups: [String] {
    let items = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
    return items.filter { FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/manifest.json").path) }
      .sorted()
  }

  /// Generates the group's images (once) and returns the directory holding them.
  static func directory(_ group: String) throws -> URL {
    lock.lock()
    defer { lock.unlock() }
    if let d = made[group] { return d }
    let out = root.appendingPathComponent("generated/\(group)")
    let script = root.appendingPathComponent("\(group)/make.sh")
    let stamp = out.appendingPathComponent(".done")
    // Regenerate when the generator changed since the last run.
    let scriptDate = (try? FileManager.default.attributesOfItem(atPath: script.path)[.modificationDate] as? Date) ?? Date()
    let stampDate = (try? FileManager.default.attributesOfItem(atPath: stamp.path)[.modificationDate] as? Date) ?? .distantPast
    if FileManager.default.fileExists(atPath: script.path), stampDate < scriptDate {
      try? FileManager.default.removeItem(at: out)
      try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
      let (status, output) = run(["bash", script.path, out.path])
      guard status == 0 else {
        throw NSError(domain: "fixtures", code: Int(status),
                      userInfo: [NSLocalizedDescriptionKey: "\(group)/make.sh failed (\(status)):\n\(output)"])
      }
      _ = FileManager.default.createFile(atPath: stamp.path, contents: Data())
    }
    made[group] = out
    return out
  }

  /// Path of a fixture: generated first, then committed (hostile ones are committed).
  static func path(_ group: String, _ file: String) throws -> String {
    let generated = try directory(group).appendingPathComponent(file).path
    if FileManager.default.fileExists(atPath: generated) { return generated }
    return root.appendingPathComponent("\(group)/\(file)").path
  }

  struct Entry {
    let file: String
    /// Expected values by dotted JSON path in `imgtool info --output=json`.
    let expect: [(String, JSON)]
    /// qemu-img driver to compare with (`-f`), or nil when qemu-img has no driver for it.
    let qemu: String?
    /// Dotted paths compared with qemu-img's JSON (virtual-size is always compared).
    let qemuKeys: [String]
    /// Where qemu-img is known to be wrong: expected qemu value by path, with the reason.
    let qemuDiffers: [(String, JSON)]
    let verdict: String?
    let raw: JSON
  }

  static func manifest(_ group: String) throws -> [Entry] {
    let data = try Data(contentsOf: root.appendingPathComponent("\(group)/manifest.json"))
    let json = try JSONParser.parse([UInt8](data), format: "manifest")
    guard let items = json.array else { throw NSError(domain: "fixtures", code: 1) }
    return items.map { item in
      func pairs(_ key: String) -> [(String, JSON)] {
        if case let .object(p)? = item[key] { return p }
        return []
      }
      return Entry(file: item["file"]?.string ?? "?", expect: pairs("expect"), qemu: item["qemu"]?.string,
                   qemuKeys: item["qemu-keys"]?.array?.compactMap(\.string) ?? [],
                   qemuDiffers: pairs("qemu-differs"), verdict: item["verdict"]?.string, raw: item)
    }
  }

  /// `imgtool info --output=json` as a value, produced by the library exactly as the CLI does.
  static func info(_ path: String) throws -> JSON {
    let source = try FileSource(path: path)
    let report = InfoReport(filename: path, result: Inspector.inspect(source))
    return report.json
  }

  @discardableResult
  static func run(_ argv: [String], stdin: Data? = nil) -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    do { try p.run() } catch { return (127, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  static func qemuInfo(_ path: String, format: String) throws -> JSON {
    let (status, out) = run(["qemu-img", "info", "--output=json", "-f", format, path])
    guard status == 0 else {
      throw NSError(domain: "qemu-img", code: Int(status), userInfo: [NSLocalizedDescriptionKey: out])
    }
    return try JSONParser.parse(out, format: "qemu-img")
  }
}
