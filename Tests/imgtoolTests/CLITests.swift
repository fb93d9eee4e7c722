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

  func tempDir() throws -> URL {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("imgtool-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: d) }
    return d
  }

  func qemuImg(_ args: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["qemu-img"] + args
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    if p.terminationStatus != 0 { throw XCTSkip("qemu-img unavailable") }
  }

  func testDirectoriesAndCharacterDevicesAreIOErrors() throws {
    let r = run(["info", "/"])
    XCTAssertEqual(r.status, 4, r.err)
    XCTAssertTrue(r.err.contains("is a directory"), r.err)
    XCTAssertEqual(run(["check", "/dev/zero"]).status, 4)
  }

  func testUsageErrorsNameTheOptionOnce() throws {
    let r = run(["check", "--checksum", "x"])
    XCTAssertEqual(r.status, 2)
    XCTAssertEqual(r.err, "imgtool check: --checksum is not an option of this command (see --help)\n")
    XCTAssertEqual(run(["check", "--expect-format", "bogus", "/dev/null"]).status, 2)
    XCTAssertEqual(run(["check", "--formats", "qcow2,bogus", "/dev/null"]).status, 2)
    XCTAssertEqual(run(["check", "--target", "mars", "/dev/null"]).status, 2)
  }

  func testCheckExitCodesOnRealImages() throws {
    let d = try tempDir()
    let base = d.appendingPathComponent("base.raw").path
    let overlay = d.appendingPathComponent("overlay.qcow2").path
    try qemuImg(["create", "-q", "-f", "raw", base, "16M"])
    try qemuImg(["create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay])
    XCTAssertEqual(run(["check", base]).status, 0)
    XCTAssertEqual(run(["check", overlay]).status, 1)
    XCTAssertEqual(run(["check", "--allow", "qcow2.backing-file", overlay]).status, 0)
    // The unsafe finding outranks the target's refusal.
    XCTAssertEqual(run(["check", "--target", "glance", overlay]).status, 1)
    XCTAssertEqual(run(["check", "--expect-format", "qcow2", base]).status, 6)
    XCTAssertEqual(run(["info", "-f", "qcow2", base]).status, 6)
    let json = run(["check", "--output=json", overlay]).out
    XCTAssertTrue(json.contains("\"verdict\": \"unsafe\""), json)
    XCTAssertTrue(json.contains("\"id\": \"qcow2.backing-file\""), json)
  }

  func testStreamCheckSaysItNeedsAFile() throws {
    let d = try tempDir()
    let img = d.appendingPathComponent("img.qcow2").path
    try qemuImg(["create", "-q", "-f", "qcow2", img, "64M"])
    let bytes = try Data(contentsOf: URL(fileURLWithPath: img))
    XCTAssertEqual(run(["info", "-"], stdin: bytes).status, 0)
    let r = run(["check", "-"], stdin: bytes)
    XCTAssertEqual(r.status, 5, r.out)
    XCTAssertTrue(r.out.contains("input.needs-seekable"), r.out)
    XCTAssertEqual(run(["check", "--header-only", "-"], stdin: bytes).status, 0)
  }

  /// The promise behind every external reference: imgtool never opens, stats or resolves a path
  /// named inside an image. strace records every file system call of info and check.
  func testNeverTouchesFilesNamedInsideAnImage() throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/strace") else { throw XCTSkip("strace is not installed") }
    let d = try tempDir()
    let canary = d.appendingPathComponent("canary-target").path
    FileManager.default.createFile(atPath: canary, contents: Data(count: 4096))
    let vmdk = d.appendingPathComponent("evil.vmdk").path
    let descriptor = """
      # Disk DescriptorFile
      version=1
      CID=fffffffe
      parentCID=ffffffff
      createType="monolithicFlat"
      parentFileNameHint="\(canary)"

      # Extent description
      RW 8 FLAT "\(canary)" 0
      RW 8 FLAT "../canary-target" 0

      """
    try descriptor.write(toFile: vmdk, atomically: true, encoding: .utf8)
    let qcow2 = d.appendingPathComponent("evil.qcow2").path
    try qemuImg(["create", "-q", "-f", "qcow2", "-b", canary, "-F", "raw", qcow2, "1M"])
    for image in [vmdk, qcow2] {
      for command in ["info", "check"] {
        let trace = d.appendingPathComponent("trace").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
        p.arguments = ["-f", "-qq", "-e", "trace=%file", "-o", trace, CLITests.binary, command, image]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        // info identifies (0); check calls both unsafe (1).
        XCTAssertEqual(p.terminationStatus, command == "info" ? 0 : 1, "\(command) \(image)")
        let calls = try String(contentsOfFile: trace, encoding: .utf8)
        XCTAssertTrue(calls.contains(image), "strace saw nothing: \(calls.prefix(300))")
        XCTAssertFalse(calls.contains("canary-target"), "\(command) touched a file named inside \(image):\n\(calls)")
      }
    }
  }
}

