import Foundation
import XCTest
@testable import FormatProbe

/// Builds tar archives field by field, so each test can break exactly one field.
struct TarBuilder {
  struct Header {
    var name = "file"                 // 0, 100: name
    var mode = "0000644"              // 100, 8: mode (octal)
    var size: UInt64 = 0              // 124, 12: size (octal)
    var sizeField: [UInt8]? = nil     //          raw size field override (base-256, garbage)
    var mtime = "14000000000"         // 136, 12: mtime
    var checksumDelta: Int = 0        // 148, 8: chksum (computed, then offset by this)
    var type: UInt8 = 0x30            // 156, 1: typeflag
    var link = ""                     // 157, 100: linkname
    var magic: [UInt8] = Array("ustar\u{0}00".utf8)  // 257, 8: magic + version
    var prefix = ""                   // 345, 155: prefix (ustar)

    func block() -> [UInt8] {
      var b = [UInt8](repeating: 0, count: 512)
      func put(_ s: [UInt8], _ at: Int, _ n: Int) { for (i, c) in s.prefix(n).enumerated() { b[at + i] = c } }
      put(Array(name.utf8), 0, 100)
      put(Array(mode.utf8), 100, 8)
      put(Array("0000000".utf8), 108, 8)
      put(Array("0000000".utf8), 116, 8)
      if let f = sizeField { put(f, 124, 12) } else {
        let o = String(size, radix: 8)
        put(Array((String(repeating: "0", count: max(0, 11 - o.count)) + o).utf8), 124, 12)
      }
      put(Array(mtime.utf8), 136, 12)
      b[156] = type
      put(Array(link.utf8), 157, 100)
      put(magic, 257, 8)
      put(Array(prefix.utf8), 345, 155)
      for i in 148..<156 { b[i] = 0x20 }
      let sum = b.reduce(0) { $0 + Int($1) } + checksumDelta
      let o = String(sum, radix: 8)
      put(Array((String(repeating: "0", count: max(0, 6 - o.count)) + o).utf8) + [0, 0x20], 148, 8)
      return b
    }
  }

  var bytes: [UInt8] = []

  mutating func add(_ h: Header, data: [UInt8] = []) {
    var h = h
    if h.sizeField == nil && h.size == 0 { h.size = UInt64(data.count) }
    bytes += h.block()
    bytes += data
    bytes += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
  }

  mutating func file(_ name: String, _ data: [UInt8]) { add(Header(name: name), data: data) }

  mutating func finish() { bytes += [UInt8](repeating: 0, count: 1024) }

  static func pax(_ records: [(String, String)]) -> [UInt8] {
    var out: [UInt8] = []
    for (k, v) in records {
      let body = " \(k)=\(v)\n"
      var len = body.utf8.count + 1
      while String(len).utf8.count + body.utf8.count != len { len += 1 }
      out += Array("\(len)\(body)".utf8)
    }
    return out
  }
}

final class OVATests: XCTestCase {
  static let ovfText = """
    <?xml version="1.0"?>
    <Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
      <References><File ovf:id="file1" ovf:href="disk.img"/></References>
      <DiskSection><Disk ovf:diskId="d1" ovf:fileRef="file1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20" ovf:format="http://en.wikipedia.org/wiki/Byte"/></DiskSection>
      <VirtualSystem ovf:id="vm"><Name>t</Name></VirtualSystem>
    </Envelope>
    """
  static let disk = [UInt8](repeating: 0, count: 1 << 20)

  func manifest(_ files: [(String, [UInt8])]) -> [UInt8] {
    var s = ""
    for (n, d) in files {
      let g = Digest(.sha256)
      g.update(d)
      s += "SHA256(\(n))= \(g.finalHex())\n"
    }
    return Array(s.utf8)
  }

  func goodOVA(_ edit: (inout TarBuilder) -> Void = { _ in }) -> [UInt8] {
    var t = TarBuilder()
    let ovf = Array(OVATests.ovfText.utf8)
    t.file("app.ovf", ovf)
    t.file("app.mf", manifest([("app.ovf", ovf), ("disk.img", OVATests.disk)]))
    t.file("disk.img", OVATests.disk)
    edit(&t)
    t.finish()
    return t.bytes
  }

  func inspect(_ bytes: [UInt8]) -> InspectionResult { Inspector.inspect(MemorySource(bytes)) }
  func ids(_ r: InspectionResult) -> [String] { r.allFindings.map(\.id) }

  func testValidOVA() throws {
    let r = inspect(goodOVA())
    let info = try XCTUnwrap(r.info)
    XCTAssertEqual(info.probe, "ova")
    XCTAssertEqual(info.containerFormat, .ova)
    XCTAssertEqual(info.diskFormat, .raw)
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(info.children.map(\.name), ["disk.img"])
    XCTAssertEqual(info.children.first?.offset, 512 * 5)
    XCTAssertEqual(ids(r), [])
    XCTAssertEqual(Policy().verdict(r.allFindings), .safe)
  }

  func testWalkerReadsGnuLongNamesAndPax() throws {
    var t = TarBuilder()
    let long = String(repeating: "n", count: 300) + ".vmdk"
    t.add(TarBuilder.Header(name: "././@LongLink", type: 0x4c, magic: Array("ustar  \u{0}".utf8)), data: Array((long + "\u{0}").utf8))
    t.add(TarBuilder.Header(name: String(long.prefix(99)), magic: Array("ustar  \u{0}".utf8)), data: [1, 2, 3])
    t.add(TarBuilder.Header(name: "PaxHeaders/x", type: 0x78), data: TarBuilder.pax([("path", "pax/long/" + long), ("size", "5")]))
    t.add(TarBuilder.Header(name: "short", size: 0), data: [])
    t.bytes += [9, 9, 9, 9, 9] + [UInt8](repeating: 0, count: 507)  // 5 bytes per the pax size
    t.add(TarBuilder.Header(name: "b", prefix: "dir/sub"), data: [7])
    t.finish()
    let l = try Tar.walk(MemorySource(t.bytes))
    XCTAssertNil(l.error)
    XCTAssertTrue(l.sawEndMarker)
    XCTAssertEqual(l.members.map(\.name), [long, "pax/long/" + long, "dir/sub/b"])
    XCTAssertEqual(l.members.map(\.size), [3, 5, 1])
    XCTAssertTrue(l.sawPax)
  }

  func testBase256Size() throws {
    var t = TarBuilder()
    t.add(TarBuilder.Header(name: "big", sizeField: [0x80] + [UInt8](repeating: 0, count: 10) + [4]), data: [1, 2, 3, 4])
    t.finish()
    XCTAssertEqual(try Tar.walk(MemorySource(t.bytes)).members.first?.size, 4)
    var neg = TarBuilder()
    neg.add(TarBuilder.Header(name: "neg", sizeField: [0xff] + [UInt8](repeating: 0xff, count: 11)), data: [])
    neg.finish()
    let l = try Tar.walk(MemorySource(neg.bytes))
    XCTAssertEqual(l.error?.field, "size")
  }

  func testFirstHeaderChecksumWrong() {
    var t = TarBuilder()
    t.add(TarBuilder.Header(name: "app.ovf", checksumDelta: 1), data: Array("x".utf8))
    t.finish()
    let r = inspect(t.bytes)
    guard case let .malformed(e) = r.outcome else { return XCTFail("\(r.outcome)") }
    XCTAssertEqual(e.finding, "ova.tar-checksum")
    XCTAssertEqual(e.offset, 148)
    XCTAssertEqual(ids(r), ["ova.tar-checksum"])
    XCTAssertEqual(Policy().verdict(r.allFindings), .corrupt)
  }

  func testLaterHeaderChecksumWrong() throws {
    let bytes = goodOVA { t in t.add(TarBuilder.Header(name: "extra", checksumDelta: -3), data: [1]) }
    let r = inspect(bytes)
    XCTAssertEqual(r.info?.probe, "ova")
    XCTAssertTrue(ids(r).contains("ova.tar-checksum"), "\(ids(r))")
    XCTAssertEqual(Policy().verdict(r.allFindings), .corrupt)
  }

  func testAbsurdSizeBeyondFile() throws {
    let bytes = goodOVA { t in t.add(TarBuilder.Header(name: "huge.img", sizeField: Array("77777777777\u{0}".utf8)), data: []) }
    let r = inspect(bytes)
    XCTAssertTrue(ids(r).contains("ova.member-truncated"), "\(ids(r))")
    let l = try Tar.walk(MemorySource(bytes))
    XCTAssertEqual(l.error?.kind, .truncated)
    XCTAssertEqual(l.members.count, 3)
    // Garbage in the size field.
    var g = TarBuilder()
    g.add(TarBuilder.Header(name: "a", sizeField: Array("12x45\u{0}".utf8)), data: [])
    g.finish()
    XCTAssertEqual(try Tar.walk(MemorySource(g.bytes)).error?.kind, .invalidField)
  }

  func testMalformedHeaderFieldIsAFinding() throws {
    let bytes = goodOVA { t in t.add(TarBuilder.Header(name: "x", sizeField: Array("12x45\u{0}".utf8)), data: []) }
    let f = inspect(bytes).allFindings.first { $0.id == "ova.malformed" }
    XCTAssertEqual(f?.severity, .corrupt)
    XCTAssertEqual(f?.field, "size")
  }

  func testMultipleDescriptorsAndMalformedManifest() throws {
    let r = inspect(goodOVA { t in
      t.file("second.ovf", Array(OVATests.ovfText.utf8))
      t.file("extra.mf", [])
    })
    XCTAssertEqual(r.allFindings.first { $0.id == "ova.multiple-descriptors" }?.severity, .warning)
    var t = TarBuilder()
    let ovf = Array(OVATests.ovfText.utf8)
    t.file("app.ovf", ovf)
    t.file("app.mf", Array("this is not a manifest\n".utf8) + manifest([("app.ovf", ovf), ("disk.img", OVATests.disk)]))
    t.file("disk.img", OVATests.disk)
    t.finish()
    let m = inspect(t.bytes).allFindings
    XCTAssertEqual(m.map(\.id), ["ova.manifest-malformed"])
    XCTAssertEqual(m.first?.severity, .warning)
  }

  func testMalformedDescriptorInsideOVA() throws {
    var t = TarBuilder()
    t.file("app.ovf", Array("<?xml version=\"1.0\"?><Envelope><References>".utf8))
    t.file("disk.img", OVATests.disk)
    t.finish()
    let r = inspect(t.bytes)
    XCTAssertEqual(r.info?.containerFormat, .ova)
    XCTAssertEqual(r.allFindings.first { $0.id == "ovf.malformed" }?.severity, .corrupt)
    XCTAssertEqual(r.info?.children.map(\.name), ["disk.img"])
  }

  func testDiskFormatMismatch() throws {
    // A gzip'd member the descriptor calls a plain vmdk (no ovf:compression).
    let gz = try CompressedTests.tool(OVATests.disk, "gzip -n -c")
    let text = OVATests.ovfText.replacingOccurrences(of: "http://en.wikipedia.org/wiki/Byte",
                                                     with: "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized")
    var t = TarBuilder()
    t.file("app.ovf", Array(text.utf8))
    t.file("disk.img", gz)
    t.finish()
    let f = inspect(t.bytes).allFindings.first { $0.id == "ova.disk-format-mismatch" }
    XCTAssertEqual(f?.severity, .corrupt)
    // Declared raw, stored raw: no finding.
    XCTAssertFalse(ids(inspect(goodOVA())).contains("ova.disk-format-mismatch"))
  }

  func testMemberCountLimit() throws {
    var t = TarBuilder()
    let h = TarBuilder.Header(name: "e", size: 0).block()
    for _ in 0...Tar.Limits.maxMembers { t.bytes += h }
    t.finish()
    let l = try Tar.walk(MemorySource(t.bytes))
    XCTAssertEqual(l.members.count, Tar.Limits.maxMembers)
    XCTAssertEqual(l.error?.kind, .limitExceeded)
  }

  func testOversizedLongNameAndPax() throws {
    var t = TarBuilder()
    t.add(TarBuilder.Header(name: "././@LongLink", type: 0x4c), data: [UInt8](repeating: 0x61, count: 5000))
    t.finish()
    XCTAssertEqual(try Tar.walk(MemorySource(t.bytes)).error?.kind, .limitExceeded)
    var p = TarBuilder()
    p.add(TarBuilder.Header(name: "x", type: 0x78), data: Array("99 path=short\n".utf8))
    p.finish()
    XCTAssertEqual(try Tar.walk(MemorySource(p.bytes)).error?.field, "pax record")
  }

  func testMemberPathTraversal() throws {
    for bad in ["../../etc/cron.d/x", "/etc/passwd", "a/../../b", "C:\\windows\\x"] {
      let r = inspect(goodOVA { t in t.file(bad, [1]) })
      let f = r.allFindings.filter { $0.id == "ova.member-path" }
      XCTAssertEqual(f.count, 1, bad)
      XCTAssertEqual(f.first?.severity, .unsafe)
    }
    XCTAssertFalse(ids(inspect(goodOVA { t in t.file("dir/..hidden", [1]) })).contains("ova.member-path"))
  }

  func testLinksAndDevices() throws {
    let r = inspect(goodOVA { t in
      t.add(TarBuilder.Header(name: "disk2.img", type: 0x32, link: "/dev/sda"))
      t.add(TarBuilder.Header(name: "null", type: 0x33))
    })
    XCTAssertTrue(ids(r).contains("ova.member-link"))
    XCTAssertTrue(ids(r).contains("ova.member-special"))
    XCTAssertEqual(r.info?.externalReferences.map(\.name), ["/dev/sda"])
  }

  func testDescriptorNotFirst() throws {
    var t = TarBuilder()
    let ovf = Array(OVATests.ovfText.utf8)
    t.file("disk.img", OVATests.disk)
    t.file("app.ovf", ovf)
    t.finish()
    let r = inspect(t.bytes)
    let f = r.allFindings.first { $0.id == "ova.descriptor-not-first" }
    XCTAssertEqual(f?.severity, .warning)
    XCTAssertFalse(ids(inspect(goodOVA())).contains("ova.descriptor-not-first"))
  }

  func testMemberMissingAndManifestEntries() throws {
    var t = TarBuilder()
    let ovf = Array(OVATests.ovfText.utf8)
    t.file("app.ovf", ovf)
    t.file("app.mf", manifest([("app.ovf", ovf), ("ghost.img", [])]))
    t.file("other.txt", [1])
    t.finish()
    let r = inspect(t.bytes)
    XCTAssertEqual(r.allFindings.filter { $0.id == "ova.member-missing" }.count, 2)  // disk.img (href) and ghost.img (manifest)
    XCTAssertEqual(r.allFindings.first { $0.id == "ova.member-missing" }?.severity, .corrupt)
    XCTAssertEqual(r.allFindings.filter { $0.id == "ova.manifest-missing-entry" }.map(\.severity), [.warning])  // other.txt
  }

  func testDescriptorFindingsInsideOVA() throws {
    let evil = OVATests.ovfText.replacingOccurrences(of: "<?xml version=\"1.0\"?>", with: "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]>")
      .replacingOccurrences(of: "<File ovf:id=\"file1\" ovf:href=\"disk.img\"/>",
                            with: "<File ovf:id=\"file1\" ovf:href=\"disk.img\"/><File ovf:id=\"f2\" ovf:href=\"http://x.example/a\"/>")
    var t = TarBuilder()
    t.file("app.ovf", Array(evil.utf8))
    t.file("disk.img", OVATests.disk)
    t.finish()
    let r = inspect(t.bytes)
    XCTAssertTrue(ids(r).contains("ovf.doctype"))
    XCTAssertTrue(ids(r).contains("ovf.external-file"))
    XCTAssertEqual(r.info?.externalReferences.map(\.name), ["http://x.example/a"])
  }

  func testCapacityMismatch() throws {
    let smaller = OVATests.ovfText.replacingOccurrences(of: "ovf:capacity=\"1\"", with: "ovf:capacity=\"512\"")
      .replacingOccurrences(of: "byte * 2^20", with: "byte")
    var t = TarBuilder()
    t.file("app.ovf", Array(smaller.utf8))
    t.file("disk.img", OVATests.disk)
    t.finish()
    XCTAssertEqual(inspect(t.bytes).allFindings.first { $0.id == "ovf.capacity-mismatch" }?.severity, .corrupt)
    XCTAssertFalse(ids(inspect(goodOVA())).contains("ovf.capacity-mismatch"))
  }

  func testPlainTarIsNotAnOVA() throws {
    var t = TarBuilder()
    t.file("disk.raw", OVATests.disk)
    t.finish()
    let info = try XCTUnwrap(inspect(t.bytes).info)
    XCTAssertEqual(info.subformat, "tar")
    XCTAssertEqual(info.containerFormat, .compressed)
    XCTAssertEqual(info.children.map(\.name), ["disk.raw"])
    XCTAssertEqual(info.virtualSize, 1 << 20)
  }

  func testDepthLimit() throws {
    // An OVA inside an OVA inside an OVA...: nesting stops at ProbeOptions.maxDepth.
    var inner = goodOVA()
    for _ in 0..<5 {
      var t = TarBuilder()
      t.file("nested.ova", inner)
      t.finish()
      inner = t.bytes
    }
    var depth = 0
    var r = inspect(inner)
    while let c = r.info?.children.first { r = c.result; depth += 1 }
    XCTAssertEqual(depth, ProbeOptions().maxDepth)
  }

  func testInflationBudgetIsSharedByMembers() throws {
    let gz = try CompressedTests.tool([UInt8](repeating: 0, count: 2 << 20) + [1], "gzip -n -c")
    var t = TarBuilder()
    for i in 0..<3 { t.file("d\(i).img.gz", gz) }
    t.finish()
    let ctx = try ProbeContext(source: MemorySource(t.bytes))
    let info = try XCTUnwrap(try OVAProbe.probe(ctx))
    XCTAssertEqual(info.children.count, 3)
    let r = OVAProbe.deepCheck(ctx, info, budget: InflateBudget(3 << 20))
    XCTAssertEqual(r.findings.map(\.id), ["compressed.unchecked", "compressed.unchecked"])
    XCTAssertEqual(r.counts.json["members"]?["d0.img.gz"]?["inflated-bytes"]?.uint, (2 << 20) + 1)
    XCTAssertEqual(OVAProbe.deepCheck(ctx, info).findings.map(\.id), [])
  }

  func testGnuSparseMember() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sparse-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    // 30 data islands in a 4 MiB file: more than the header's 4 map entries (extension blocks).
    var disk = [UInt8](repeating: 0, count: 4 << 20)
    for k in 0..<30 { for j in 0..<100 { disk[k * 139_000 + 4096 + j] = UInt8(truncatingIfNeeded: k &* 31 &+ j) } }
    disk[510] = 0x55; disk[511] = 0xaa
    // Written with holes (only the islands allocated), so tar -S stores it sparse.
    let path = dir.appendingPathComponent("disk.raw").path
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try h.truncate(atOffset: UInt64(disk.count))
    for k in 0..<30 {
      try h.seek(toOffset: UInt64(k * 139_000 + 4096))
      h.write(Data(disk[(k * 139_000 + 4096)..<(k * 139_000 + 4196)]))
    }
    try h.seek(toOffset: 510)
    h.write(Data([0x55, 0xaa]))
    try h.close()
    let out = dir.appendingPathComponent("s.tar").path
    let (rc, msg) = Fixtures.run(["tar", "--format=oldgnu", "-S", "-C", dir.path, "-cf", out, "disk.raw"])
    XCTAssertEqual(rc, 0, msg)
    let source = try FileSource(path: out)
    let l = try Tar.walk(source)
    XCTAssertNil(l.error)
    let m = try XCTUnwrap(l.members.first)
    XCTAssertEqual(m.typeflag, 0x53)
    XCTAssertEqual(m.realSize, 4 << 20)
    XCTAssertGreaterThan(m.sparseMap?.count ?? 0, 4)
    let expanded = SparseMemberSource(source, member: m)
    var got: [UInt8] = []
    var off: UInt64 = 0
    while off < expanded.size { let p = try expanded.read(at: off, count: 333_333); got += p; off += UInt64(p.count) }
    XCTAssertTrue(got == disk, "the expanded sparse member differs from the file")
    let info = try XCTUnwrap(Inspector.inspect(source).info)
    XCTAssertEqual(info.children.first?.result.info?.virtualSize, 4 << 20)
    XCTAssertEqual(info.virtualSize, 4 << 20)
    // Digest over the expanded file.
    let g = Digest(.sha256)
    g.update(disk)
    XCTAssertEqual(try OVAProbe.digest(source, m, .sha256), g.finalHex())
    // A map segment beyond the real size is refused.
    var bad = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
    for (i, c) in "00000000001".utf8.enumerated() { bad[483 + i] = c }
    var sum = 0
    for i in 0..<512 { sum += (i >= 148 && i < 156) ? 0x20 : Int(bad[i]) }
    for (i, c) in (String(repeating: "0", count: 6 - String(sum, radix: 8).count) + String(sum, radix: 8)).utf8.enumerated() { bad[148 + i] = c }
    XCTAssertEqual(try Tar.walk(MemorySource(bad)).error?.field, "sparse map")
  }

  func testTarFromGnuTar() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ova-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try Data(OVATests.ovfText.utf8).write(to: dir.appendingPathComponent("app.ovf"))
    try Data(OVATests.disk).write(to: dir.appendingPathComponent("disk.img"))
    for format in ["ustar", "gnu", "pax", "oldgnu", "posix"] {
      let out = dir.appendingPathComponent("t-\(format).ova").path
      let (rc, msg) = Fixtures.run(["tar", "--format=\(format)", "-C", dir.path, "-cf", out, "app.ovf", "disk.img"])
      XCTAssertEqual(rc, 0, msg)
      let r = Inspector.inspect(try FileSource(path: out))
      XCTAssertEqual(r.info?.containerFormat, .ova, format)
      XCTAssertEqual(r.info?.children.map(\.name), ["disk.img"], format)
      XCTAssertEqual(Policy().verdict(r.allFindings), .safe, "\(format): \(ids(r))")
    }
  }

  // MARK: check (deep)

  func deep(_ bytes: [UInt8]) throws -> (ImageInfo, CheckReport) {
    let source = MemorySource(bytes)
    let ctx = try ProbeContext(source: source)
    let info = try XCTUnwrap(try OVAProbe.probe(ctx))
    return (info, OVAProbe.deepCheck(ctx, info))
  }

  func testManifestDigestsVerified() throws {
    let (_, ok) = try deep(goodOVA())
    XCTAssertEqual(ok.findings.map(\.id), [])
    XCTAssertEqual(ok.counts.json["digests-verified"]?.uint, 2)
    XCTAssertEqual(ok.counts.json["digest-mismatches"]?.uint, 0)
  }

  func testManifestMismatch() throws {
    var bytes = goodOVA()
    bytes[512 * 5 + 1000] ^= 0x5a  // one byte of disk.img's data
    let (info, r) = try deep(bytes)
    XCTAssertEqual(info.findings.map(\.id), [])  // the header walk cannot see it
    XCTAssertEqual(r.findings.map(\.id), ["ova.manifest-mismatch"])
    XCTAssertEqual(r.findings.first?.severity, .corrupt)
    XCTAssertEqual(r.counts.json["digest-mismatches"]?.uint, 1)
    // SHA-1 and SHA-512 manifests too.
    for alg in [Digest.Algorithm.sha1, .sha512] {
      var t = TarBuilder()
      let ovf = Array(OVATests.ovfText.utf8)
      t.file("app.ovf", ovf)
      let g = Digest(alg)
      g.update(OVATests.disk)
      t.file("app.mf", Array("\(alg.rawValue.uppercased()) (disk.img) = \(g.finalHex())\n".utf8))
      var changed = OVATests.disk
      changed[7] = 1
      t.file("disk.img", changed)
      t.finish()
      XCTAssertEqual(try deep(t.bytes).1.findings.map(\.id), ["ova.manifest-mismatch"], "\(alg)")
    }
  }

  func testCompressedMemberIsDeepChecked() throws {
    // A gzip'd disk member whose CRC is wrong beyond the 4 MiB the header probe inflates.
    let zeros = [UInt8](repeating: 0, count: 6 << 20)
    let gz = try CompressedTests.tool(zeros, "gzip -n -c")
    var bad = gz
    bad[bad.count - 8] ^= 0xff
    let text = OVATests.ovfText.replacingOccurrences(of: "ovf:href=\"disk.img\"", with: "ovf:href=\"disk.img.gz\" ovf:compression=\"gzip\"")
    for (data, expect) in [(gz, [String]()), (bad, ["compressed.truncated"])] {
      var t = TarBuilder()
      t.file("app.ovf", Array(text.utf8))
      t.file("disk.img.gz", data)
      t.finish()
      let (info, r) = try deep(t.bytes)
      XCTAssertEqual(info.children.first?.result.info?.probe, "compressed")
      XCTAssertEqual(r.findings.map(\.id), expect)
      XCTAssertEqual(r.counts.json.at("members-checked")?.uint, 1)
      XCTAssertEqual(r.counts.json["members"]?["disk.img.gz"]?["inflated-bytes"]?.uint, UInt64(zeros.count))
      if let f = r.findings.first { XCTAssertTrue(f.message.hasPrefix("disk.img.gz: "), f.message) }
    }
  }
}
