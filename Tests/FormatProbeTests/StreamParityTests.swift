import XCTest
@testable import FormatProbe

/// Every fixture read as a forward-only stream (head and tail kept) must give the same answer as
/// the file, or say that it needs a seekable file: never a different guess.
final class StreamParityTests: XCTestCase {
  func testStreamsAgreeWithFilesOrSayTheyCannot() throws {
    var same = 0, refused = 0
    for group in Fixtures.groups {
      for entry in try Fixtures.manifest(group) {
        let path = try Fixtures.path(group, entry.file)
        let source = try FileSource(path: path)
        // Large sparse fixtures would only re-read zeros; the stream logic is the same at any size.
        if source.size > 128 << 20 { continue }
        let file = Inspector.inspect(source)
        let fd = try Syscalls.openReadOnly(path)
        defer { Syscalls.close(fd) }
        let stream = Inspector.inspect(try StreamSource(fd: fd, name: "-"))
        let label = "\(group)/\(entry.file)"
        switch (file.outcome, stream.outcome) {
        case let (.identified(a), .identified(b)):
          XCTAssertEqual(a.probe, b.probe, label)
          XCTAssertEqual(a.subformat, b.subformat, label)
          XCTAssertEqual(a.virtualSize, b.virtualSize, label)
          same += 1
        case (_, .needsSeekable):
          refused += 1
        case (.ambiguous, .ambiguous), (.malformed, .malformed):
          same += 1
        default:
          XCTFail("\(label): file says \(file.outcome), stream says \(stream.outcome)")
        }
      }
    }
    XCTAssertGreaterThan(same, 0)
    print("stream parity: \(same) same answers, \(refused) need a seekable file")
  }
}
