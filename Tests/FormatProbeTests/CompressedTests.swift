import Foundation
import XCTest
@testable import FormatProbe

/// Compressed payloads and initramfs archives: headers, integrity checks, truncation, bombs, and
/// the split of work between the compressed and ari probes.
final class CompressedTests: XCTestCase {
  static let work: URL = {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("imgtool-compressed-\(getpid())")
    try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
  }()

  /// Runs `command` (a shell pipeline reading `in`, writing `out`) over `data`.
  func tool(_ data: [UInt8], _ command: String) throws -> [UInt8] { try CompressedTests.tool(data, command) }

  static func tool(_ data: [UInt8], _ command: String) throws -> [UInt8] {
    let input = CompressedTests.work.appendingPathComponent("in-\(UUID().uuidString)")
    let output = CompressedTests.work.appendingPathComponent("out-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: input); try? FileManager.default.removeItem(at: output) }
    try Data(data).write(to: input)
    let (rc, msg) = Fixtures.run(["bash", "-c", "\(command) < '\(input.path)' > '\(output.path)'"])
    guard rc == 0 else { throw XCTSkip("\(command) failed: \(msg)") }
    return [UInt8](try Data(contentsOf: output))
  }

  /// A small disk: an MBR signature and some text, then zeros.
  static let disk: [UInt8] = {
    var d = [UInt8](repeating: 0, count: 1 << 20)
    d[510] = 0x55; d[511] = 0xaa
    for (i, c) in "payload".utf8.enumerated() { d[4096 + i] = c }
    return d
  }()

  func inspect(_ b: [UInt8]) -> InspectionResult { Inspector.inspect(MemorySource(b)) }
  func probe(_ b: [UInt8]) throws -> ImageInfo? { try CompressedProbe.probe(try ProbeContext(source: MemorySource(b))) }

  func testCRC32() {
    XCTAssertEqual(Zlib.crc32(Array("123456789".utf8)), 0xcbf43926)
    XCTAssertEqual(Zlib.crc32([]), 0)
  }

  func testEveryCodecInflatesToTheSamePayload() throws {
    for (cmd, codec) in [("gzip -c", Codec.gzip), ("xz -c", .xz), ("zstd -q -c", .zstd), ("lz4 -q -c", .lz4), ("lz4 -q -l -c", .lz4Legacy)] {
      let c = try tool(CompressedTests.disk, cmd)
      XCTAssertEqual(Codec.sniff(c[...]), codec, cmd)
      let h = Inflate.head(MemorySource(c), codec: codec, limit: 4 << 20)
      XCTAssertNil(h.outcome.error, cmd)
      XCTAssertTrue(h.outcome.complete, cmd)
      XCTAssertEqual(h.bytes, CompressedTests.disk, cmd)
      let info = try XCTUnwrap(try probe(c), cmd)
      XCTAssertEqual(info.subformat, codec.rawValue)
      XCTAssertEqual(info.virtualSize, 1 << 20, cmd)
      XCTAssertEqual(info.children.first?.result.info?.probe, "raw", cmd)
      XCTAssertEqual(info.findings.map(\.id), [], cmd)
    }
  }

  func testGzipHeaderFields() throws {
    let plain = try tool(CompressedTests.disk, "gzip -n -c")
    let body = Array(plain[10...])  // deflate data + trailer
    // FLG = FEXTRA | FNAME | FCOMMENT | FHCRC.
    var h: [UInt8] = [0x1f, 0x8b, 8, 4 | 8 | 16 | 2, 0x10, 0x20, 0x30, 0x40, 2, 3]
    h += [4, 0, 0x41, 0x42, 2, 0]         // XLEN 4, subfield
    h += Array("disk.img".utf8) + [0]      // FNAME
    h += Array("a comment".utf8) + [0]     // FCOMMENT
    let crc = Zlib.crc32(h)
    h += [UInt8(crc & 0xff), UInt8((crc >> 8) & 0xff)]
    let parsed = try GzipHeader.parse(h + body, base: 0)
    XCTAssertEqual(parsed.name, "disk.img")
    XCTAssertEqual(parsed.comment, "a comment")
    XCTAssertEqual(parsed.extraLength, 4)
    XCTAssertEqual(parsed.mtime, 0x40302010)
    XCTAssertEqual(parsed.length, h.count)
    let info = try XCTUnwrap(try probe(h + body))
    XCTAssertEqual(info.formatSpecific.json.at("original-name")?.string, "disk.img")
    XCTAssertEqual(info.virtualSize, 1 << 20)
    // A wrong header CRC.
    var bad = h
    bad[h.count - 1] ^= 0xff
    XCTAssertThrowsError(try GzipHeader.parse(bad + body, base: 0)) { e in XCTAssertEqual((e as? ImageError)?.field, "FHCRC") }
    // Reserved flag bits: not a gzip header.
    var reserved = plain
    reserved[3] = 0x20
    XCTAssertNil(Codec.sniff(reserved[...]))
    XCTAssertThrowsError(try GzipHeader.parse(reserved, base: 0))
    // A name that never ends.
    let endless: [UInt8] = [0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3] + [UInt8](repeating: 0x61, count: GzipHeader.Limits.maxText + 10)
    XCTAssertThrowsError(try GzipHeader.parse(endless, base: 0)) { e in XCTAssertEqual((e as? ImageError)?.kind, .limitExceeded) }
    // A header longer than the first 1 KiB read (a 5000-byte name).
    let longName = String(repeating: "n", count: 5000)
    let long: [UInt8] = [0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3] + Array(longName.utf8) + [0] + body
    let li = try XCTUnwrap(try probe(long))
    XCTAssertEqual(li.formatSpecific.json.at("original-name")?.string, longName)
    XCTAssertEqual(li.virtualSize, 1 << 20)
    // Headers cut short.
    for n in [3, 4, 9, 12] { XCTAssertThrowsError(try GzipHeader.parse(Array(h.prefix(n)), base: 0)) }
  }

  func testTruncatedStream() throws {
    let c = try tool(CompressedTests.disk, "gzip -c")
    for cut in [8, 4, 100] {
      let r = inspect(Array(c.dropLast(cut)))
      let f = r.allFindings.first { $0.id == "compressed.truncated" }
      XCTAssertEqual(f?.severity, .corrupt, "cut \(cut): \(r.allFindings.map(\.id))")
    }
    for cmd in ["xz -c", "zstd -q -c", "lz4 -q -c", "lz4 -q -l -c"] {
      let x = try tool(CompressedTests.disk, cmd)
      let r = inspect(Array(x.dropLast(12)))
      XCTAssertTrue(r.allFindings.contains { $0.id == "compressed.truncated" }, "\(cmd): \(r.allFindings.map(\.id)) \(r.outcome)")
    }
  }

  func testCRCAndISizeMismatch() throws {
    var c = try tool(CompressedTests.disk, "gzip -c")
    c[c.count - 8] ^= 1  // CRC32
    var r = inspect(c)
    XCTAssertEqual(r.allFindings.first { $0.id == "compressed.truncated" }?.field, "CRC32")
    c[c.count - 8] ^= 1
    c[c.count - 4] ^= 1  // ISIZE
    r = inspect(c)
    XCTAssertEqual(r.allFindings.first { $0.id == "compressed.truncated" }?.field, "ISIZE")
    // Corrupt deflate data.
    var d = try tool(CompressedTests.disk, "gzip -c")
    for i in 30..<60 { d[i] = 0xff }
    XCTAssertTrue(inspect(d).allFindings.contains { $0.id == "compressed.truncated" })
  }

  func testGarbageAfterMagicIsMalformed() {
    let b: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3] + [UInt8](repeating: 0xff, count: 100)
    let r = inspect(b)
    guard case let .malformed(e) = r.outcome else { return XCTFail("\(r.outcome)") }
    XCTAssertEqual(e.finding, "compressed.truncated")
  }

  func testBombOutputIsCapped() throws {
    let zeros = [UInt8](repeating: 0, count: 64 << 20)
    let c = try tool(zeros, "gzip -c")
    XCTAssertLessThan(c.count, 200_000)
    let h = Inflate.head(MemorySource(c), codec: .gzip, limit: 4 << 20)
    XCTAssertEqual(h.bytes.count, 4 << 20)
    XCTAssertTrue(h.outcome.hitOutputLimit)
    var seen: UInt64 = 0
    let o = Inflate.run(MemorySource(c), codec: .gzip, maxOutput: 1 << 40,
                        ratioGuard: Inflate.RatioGuard(after: 8 << 20, ratio: 100)) { (p) throws(ImageError) -> Bool in
      seen += UInt64(p.count)
      return true
    }
    XCTAssertTrue(o.hitRatioGuard)
    XCTAssertLessThan(seen, 32 << 20)
    // The probe reports the declared size without inflating it all.
    let info = try XCTUnwrap(try probe(c))
    XCTAssertEqual(info.formatSpecific.json.at("uncompressed-size")?.uint, 64 << 20)
    XCTAssertEqual(info.virtualSize, 64 << 20)
  }

  func testXzIndexAndZstdLz4ContentSize() throws {
    let big = (0..<(5 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
    let x = try tool(big, "xz -0 -c")
    XCTAssertEqual(try XzIndex.uncompressedSize(try ProbeContext(source: MemorySource(x))), UInt64(big.count))
    // Two concatenated streams: the index of the last one does not cover the file.
    XCTAssertNil(try XzIndex.uncompressedSize(try ProbeContext(source: MemorySource(x + x))))
    let info = try XCTUnwrap(try probe(x))
    XCTAssertEqual(info.formatSpecific.json.at("uncompressed-size")?.uint, UInt64(big.count))
    XCTAssertEqual(info.formatSpecific.json.at("uncompressed-size-from")?.string, "xz index")
    let z = try tool(big, "zstd -q -1 -c --stream-size=\(big.count)")
    XCTAssertEqual(Zstd.frameContentSize(z[...]), UInt64(big.count))
    let l = try tool(big, "lz4 -q --content-size -c")
    XCTAssertEqual(Lz4.frameContentSize(l[...]), UInt64(big.count))
    XCTAssertNil(Lz4.frameContentSize(try tool(big, "lz4 -q -c")[...]))
  }

  func testTrailingDataAndPaddingAndMembers() throws {
    let c = try tool(CompressedTests.disk, "gzip -c")
    let garbage = try XCTUnwrap(try probe(c + Array("not gzip".utf8)))
    XCTAssertEqual(garbage.findings.map(\.id), ["compressed.trailing-data"])
    XCTAssertEqual(garbage.findings.first?.severity, .warning)
    let padded = try XCTUnwrap(try probe(c + [UInt8](repeating: 0, count: 1024)))
    XCTAssertEqual(padded.findings.map(\.id), [])
    let two = try XCTUnwrap(try probe(c + c))
    XCTAssertEqual(two.formatSpecific.json.at("streams")?.uint, 2)
    XCTAssertEqual(two.virtualSize, 2 << 20)
    let x = try tool(CompressedTests.disk, "xz -c")
    XCTAssertEqual(try probe(x + [0, 0, 0, 0])?.findings.map(\.id), [])
  }

  func testBzip2IsRecognisedOnly() throws {
    let b = try tool(CompressedTests.disk, "bzip2 -c")
    let info = try XCTUnwrap(try probe(b))
    XCTAssertEqual(info.subformat, "bzip2")
    XCTAssertTrue(info.children.isEmpty)
    XCTAssertEqual(Policy().verdict(inspect(b).allFindings), .safe)
  }

  // MARK: initramfs (ari)

  func cpio(_ files: [(String, [UInt8])], format: String = "newc") throws -> [UInt8] {
    let dir = CompressedTests.work.appendingPathComponent("root-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    for (n, d) in files { try Data(d).write(to: dir.appendingPathComponent(n)) }
    let out = dir.appendingPathComponent("../\(UUID().uuidString).cpio").standardizedFileURL
    defer { try? FileManager.default.removeItem(at: out) }
    let (rc, msg) = Fixtures.run(["bash", "-c", "cd '\(dir.path)' && ls | cpio --quiet -o -H \(format) > '\(out.path)'"])
    guard rc == 0 else { throw XCTSkip("cpio failed: \(msg)") }
    return [UInt8](try Data(contentsOf: out))
  }

  func testCompressedCpioBelongsToARI() throws {
    let archive = try cpio([("init", Array("#!/bin/sh\n".utf8)), ("x", [1, 2, 3])])
    for cmd in ["gzip -c", "xz --check=crc32 -c", "zstd -q -c", "lz4 -q -l -c", "lz4 -q -c"] {
      let c = try tool(archive, cmd)
      XCTAssertNil(try probe(c), cmd)
      let r = inspect(c)
      XCTAssertEqual(r.info?.probe, "ari", "\(cmd): \(r.outcome)")
      XCTAssertEqual(r.info?.formatSpecific.json.at("segments.0.names")?.array?.compactMap(\.string), ["init", "x"], cmd)
      XCTAssertEqual(r.matches.count, 1, cmd)
    }
    for format in ["newc", "crc", "odc", "bin"] {
      let a = try cpio([("init", [1])], format: format)
      let r = inspect(a)
      XCTAssertEqual(r.info?.probe, "ari", format)
      XCTAssertEqual(r.info?.formatSpecific.json.at("segments.0.names.0")?.string, "init", format)
    }
  }

  func testHostileCpio() throws {
    var a = try cpio([("init", [UInt8](repeating: 7, count: 100))])
    // c_filesize far beyond the archive.
    var big = a
    for (i, c) in "7fffffff".utf8.enumerated() { big[54 + i] = c }
    XCTAssertThrowsError(try ARIProbe.probe(try ProbeContext(source: MemorySource(big)))) { e in
      XCTAssertEqual((e as? ImageError)?.kind, .truncated)
    }
    // c_namesize 0 and not hex.
    var zero = a
    for (i, c) in "00000000".utf8.enumerated() { zero[94 + i] = c }
    XCTAssertThrowsError(try ARIProbe.probe(try ProbeContext(source: MemorySource(zero))))
    for (i, c) in "zzzzzzzz".utf8.enumerated() { a[94 + i] = c }
    XCTAssertThrowsError(try ARIProbe.probe(try ProbeContext(source: MemorySource(a)))) { e in
      XCTAssertEqual((e as? ImageError)?.field, "c_namesize")
    }
    // Truncated header.
    XCTAssertThrowsError(try ARIProbe.probe(try ProbeContext(source: MemorySource(Array("070701000000".utf8)))))
  }

  // MARK: check (deep)

  /// Bytes that compress a little (so no ratio guard fires) and differ everywhere.
  static func noise(_ n: Int) -> [UInt8] { Array(noiseBytes.prefix(n)) }

  static let noiseBytes: [UInt8] = {
    var x: UInt32 = 2463534242
    var out = [UInt8](repeating: 0, count: 6 << 20)
    for i in 0..<out.count { x ^= x << 13; x ^= x >> 17; x ^= x << 5; out[i] = UInt8(truncatingIfNeeded: x) & 0x3f }
    return out
  }()

  func deep(_ bytes: [UInt8], maxOutput: UInt64 = CompressedProbe.CheckLimits.maxOutput,
            ratio: Inflate.RatioGuard = Inflate.RatioGuard(after: CompressedProbe.CheckLimits.ratioAfter, ratio: CompressedProbe.CheckLimits.maxRatio))
    throws -> (ImageInfo, CheckReport)
  {
    let ctx = try ProbeContext(source: MemorySource(bytes))
    let info = try XCTUnwrap(try CompressedProbe.probe(ctx))
    return (info, CompressedProbe.deepCheck(ctx, info, maxOutput: maxOutput, ratioGuard: ratio))
  }

  func testValidToolOutputsCheckSafe() throws {
    let payload = CompressedTests.disk + CompressedTests.noise(5 << 20)
    for cmd in ["gzip -c", "xz -c", "zstd -q -c", "lz4 -q -c", "lz4 -q -l -c"] {
      let c = try tool(payload, cmd)
      let (info, r) = try deep(c)
      XCTAssertEqual(info.findings.map(\.id) + r.findings.map(\.id), [], cmd)
      XCTAssertEqual(r.counts.json["inflated-bytes"]?.uint, UInt64(payload.count), cmd)
      XCTAssertEqual(r.counts.json["uncompressed-size"]?.uint, UInt64(payload.count), cmd)
      XCTAssertEqual(r.counts.json["payload-format"]?.string, "raw", cmd)
    }
    // The production entry point (8 GiB cap, 1000:1 after 1 GiB).
    let gz = try tool(payload, "gzip -c")
    let ctx = try ProbeContext(source: MemorySource(gz))
    let info = try XCTUnwrap(try CompressedProbe.probe(ctx))
    XCTAssertEqual(CompressedProbe.deepCheck(ctx, info).findings.map(\.id), [])
  }

  func testDeepTruncationBeyondTheHead() throws {
    let payload = CompressedTests.noise(6 << 20)
    for cmd in ["gzip -c", "xz -c", "zstd -q -c", "lz4 -q -c"] {
      let c = try tool(payload, cmd)
      let (info, r) = try deep(Array(c.dropLast(c.count / 10)))
      // Found once: by check, or already by info (xz's index sits in the damaged tail).
      let all = info.findings + r.findings
      XCTAssertEqual(all.map(\.id), ["compressed.truncated"], cmd)
      XCTAssertEqual(all.first?.severity, .corrupt)
      if cmd != "xz -c" { XCTAssertEqual(info.findings.map(\.id), [], "\(cmd): the head is intact") }
    }
    // gzip CRC and ISIZE beyond the head.
    var g = try tool(payload, "gzip -c")
    g[g.count - 6] ^= 1
    XCTAssertEqual(try deep(g).1.findings.first?.field, "CRC32")
  }

  func testDeepTrailingData() throws {
    let c = try tool(CompressedTests.noise(6 << 20), "gzip -c")
    let (info, r) = try deep(c + Array("junk".utf8))
    XCTAssertEqual(info.findings.map(\.id), [])
    XCTAssertEqual(r.findings.map(\.id), ["compressed.trailing-data"])
    XCTAssertEqual(r.findings.first?.severity, .warning)
  }

  func testBombIsStopped() throws {
    let c = try tool([UInt8](repeating: 0, count: 64 << 20), "zstd -q -19 -c")
    let (_, r) = try deep(c, ratio: Inflate.RatioGuard(after: 4 << 20, ratio: 1000))
    XCTAssertEqual(r.findings.map(\.id), ["compressed.bomb"])
    XCTAssertEqual(r.findings.first?.severity, .unsafe)
    XCTAssertLessThan(r.counts.json["inflated-bytes"]?.uint ?? .max, 64 << 20)
    // The same payload under a generous guard inflates fully and is a raw disk of zeros.
    let (_, ok) = try deep(c, ratio: Inflate.RatioGuard(after: 1 << 40, ratio: 1000))
    XCTAssertEqual(ok.findings.map(\.id), [])
  }

  func testOutputCapLeavesTheRestUnchecked() throws {
    let c = try tool(CompressedTests.noise(3 << 20), "xz -0 -c")
    let (_, r) = try deep(c, maxOutput: 1 << 20)
    XCTAssertEqual(r.findings.map(\.id), ["compressed.unchecked"])
    XCTAssertEqual(r.findings.first?.severity, .unsafe, "an unverified payload is unsafe")
    XCTAssertEqual(r.counts.json["inflated-bytes"]?.uint, 1 << 20)
  }

  func testTempFileRoundTrip() throws {
    let t = try TempFile()
    let data = CompressedTests.noise(3 << 20)
    try data.withUnsafeBytes { try t.append($0) }
    XCTAssertEqual(t.size, UInt64(data.count))
    XCTAssertEqual(try t.read(at: 1000, count: 10), Array(data[1000..<1010]))
    XCTAssertEqual(try t.read(at: UInt64(data.count) - 3, count: 10).count, 3)
    // Unlinked: the descriptor's path is gone (an anonymous O_TMPFILE inode or a deleted name).
    let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(t.fd)")) ?? ""
    XCTAssertTrue(link.contains("(deleted)") || link.hasPrefix("/proc") || link.isEmpty, link)
    XCTAssertThrowsError(try TempFile(directory: "/nonexistent-dir-for-imgtool"))
    // Zero pieces are skipped (sparse) but read back as zeros, also at the end.
    let z = try TempFile()
    let zeros = [UInt8](repeating: 0, count: 1 << 20)
    try zeros.withUnsafeBytes { try z.append($0) }
    try [UInt8]([9]).withUnsafeBytes { try z.append($0) }
    try zeros.withUnsafeBytes { try z.append($0) }
    XCTAssertEqual(z.size, (2 << 20) + 1)
    XCTAssertEqual(try z.read(at: (1 << 20) - 1, count: 3), [0, 9, 0])
    XCTAssertEqual(try z.read(at: (2 << 20) - 10, count: 100), [UInt8](repeating: 0, count: 11))
  }
}
