import Foundation
import XCTest

/// Runs the built `imgtool` binary as a user would: exit codes, --help, JSON on stdout.
final class CLITests: XCTestCase {
  static var binary: String {
    let build = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent(".build/debug/imgtool").path
    return ProcessInfo.processInfo.environment["IMGTOOL"] ?? build
  }

  func run(_ args: [String], stdin: Data? = nil) -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: CLITests.binary)
    p.arguments = args
    let o = Pipe(), e = Pipe(), i = Pipe()
    p.standardOutput = o
    p.standardError = e
    p.standardInput = i
    do { try p.run() } catch { return (127, "", "\(error)") }
    if let stdin { i.fileHandleForWriting.write(stdin) }
    try? i.fileHandleForWriting.close()
    let out = o.fileHandleForReading.readDataToEndOfFile()
    let err = e.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
  }

  func testHelpOnEveryCommand() {
    XCTAssertEqual(run(["--help"]).status, 0)
    for c in ["info", "check"] {
      let r = run([c, "--help"])
      XCTAssertEqual(r.status, 0, c)
      XCTAssertTrue(r.out.contains("usage: imgtool \(c)"), c)
    }
  }

  func testUsageErrors() {
    XCTAssertEqual(run([]).status, 2)
    XCTAssertEqual(run(["nonsense"]).status, 2)
    XCTAssertEqual(run(["info"]).status, 2)
    XCTAssertEqual(run(["info", "--output=xml", "/dev/null"]).status, 2)
    XCTAssertEqual(run(["info", "--bogus", "/dev/null"]).status, 2)
  }

  func testMissingFileIsIOError() {
    let r = run(["info", "/nonexistent/image.qcow2"])
    XCTAssertEqual(r.status, 4)
    XCTAssertTrue(r.err.contains("open"), r.err)
    XCTAssertEqual(r.err.split(separator: "\n").count, 1, "one-line error: \(r.err)")
  }

  func testStdinRaw() {
    let r = run(["info", "--output=json", "-"], stdin: Data(count: 4096))
    XCTAssertEqual(r.status, 0)
    XCTAssertTrue(r.out.contains("\"virtual-size\": 4096"), r.out)
  }
}
