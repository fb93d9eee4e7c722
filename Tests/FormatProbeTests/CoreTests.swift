import XCTest
@testable import FormatProbe

/// The bounds-checked reader, checked arithmetic, byte sources and JSON: the parts every probe uses.
final class CoreTests: XCTestCase {
  func testReaderReadsInOrderWithEndianness() throws {
    var r = ByteReader([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09], base: 0x100, format: "t")
    XCTAssertEqual(try r.u16BE("a"), 0x0102)
    XCTAssertEqual(try r.u16LE("b"), 0x0403)
    XCTAssertEqual(r.offset, 0x104)
    XCTAssertEqual(try r.u32BE("c"), 0x0506_0708)
    XCTAssertEqual(try r.u8("d"), 9)
    XCTAssertEqual(r.remaining, 0)
  }

  func testReaderRefusesOutOfRangeWithFieldAndOffset() {
    var r = ByteReader([1, 2, 3], base: 0x28, format: "qcow2")
    XCTAssertThrowsError(try r.u64BE("l1_table_offset")) { e in
      let err = e as! ImageError
      XCTAssertEqual(err.kind, .truncated)
      XCTAssertEqual(err.description, "qcow2: l1_table_offset at 0x28 needs 8 bytes, the input has 3 from there (truncated)")
    }
    XCTAssertThrowsError(try r.u32LE(at: -1, "x"))
    XCTAssertThrowsError(try r.u32LE(at: Int.max - 1, "x"))
    XCTAssertThrowsError(try r.bytes(at: 2, Int.max, "x"))
    XCTAssertThrowsError(try r.skip(4))
    XCTAssertFalse(r.matches([1, 2, 3, 4], at: 0))
    XCTAssertTrue(r.matches([2, 3], at: 1))
  }

  func testCheckedArithmeticThrowsInsteadOfTrapping() {
    XCTAssertThrowsError(try Checked.add(UInt64.max, 1, "f", "x"))
    XCTAssertThrowsError(try Checked.mul(UInt64.max / 2, 3, "f", "x"))
    XCTAssertThrowsError(try Checked.shiftLeft(1, 64, "f", "x"))
    XCTAssertThrowsError(try Checked.shiftLeft(3, 63, "f", "x"))
    XCTAssertEqual(try Checked.shiftLeft(1, 63, "f", "x"), 1 << 63)
    XCTAssertThrowsError(try Checked.int(1 << 40, max: 1 << 20, "f", "x"))
    XCTAssertEqual(Checked.ceilDiv(1 << 30, 1 << 30), 1)
    XCTAssertEqual(Checked.ceilDiv((1 << 30) + 1, 1 << 30), 2)
    XCTAssertEqual(Checked.ceilDiv(0, 1 << 30), 0)
  }

  func testTableValidation() {
    // count * entrySize would overflow: refused by division, not computed.
    XCTAssertThrowsError(try Checked.table(offset: 0, count: UInt64.max, entrySize: 8, maxBytes: 1 << 25, inputSize: nil, "f", "t"))
    XCTAssertThrowsError(try Checked.table(offset: 1000, count: 10, entrySize: 8, maxBytes: 1 << 25, inputSize: 1050, "f", "t"))
    XCTAssertEqual(try Checked.table(offset: 1000, count: 10, entrySize: 8, maxBytes: 1 << 25, inputSize: 1080, "f", "t"), 80)
  }

  func testStreamSourceKeepsHeadAndTailOnly() throws {
    var bytes = [UInt8](repeating: 0, count: 300_000)
    for i in 0..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: i * 7) }
    var fds: [Int32] = [0, 0]
    XCTAssertEqual(pipe(&fds), 0)
    let payload = bytes
    let writeEnd = fds[1]
    let writer = Thread {
      payload.withUnsafeBytes { Syscalls.writeAll(fd: writeEnd, $0) }
      close(writeEnd)
    }
    writer.start()
    let s = try StreamSource(fd: fds[0], headLimit: 1000, tailLimit: 500)
    close(fds[0])
    XCTAssertEqual(s.size, 300_000)
    XCTAssertEqual(try s.read(at: 10, count: 20), Array(bytes[10..<30]))
    XCTAssertEqual(try s.read(at: 299_600, count: 400), Array(bytes[299_600...]))
    XCTAssertThrowsError(try s.read(at: 150_000, count: 10)) { e in
      XCTAssertEqual((e as! ImageError).kind, .needsSeekable)
    }
  }

  func testJSONRoundTripAndEscaping() throws {
    var o = JSONObject()
    o.set("name", "a\"b\\c\n\u{1}")
    o.set("size", UInt64.max)
    o.set("neg", JSON.int(-5))
    o.set("list", JSON.array([.bool(true), .null, .string("é")]))
    let text = o.json.rendered()
    let back = try JSONParser.parse(text)
    XCTAssertEqual(back, o.json)
    XCTAssertEqual(back.at("list.2")?.string, "é")
  }

  func testJSONParserLimits() {
    XCTAssertThrowsError(try JSONParser.parse(String(repeating: "[", count: 1000)))
    XCTAssertThrowsError(try JSONParser.parse("{\"a\":1,}"))
    XCTAssertThrowsError(try JSONParser.parse("\"unterminated"))
    XCTAssertThrowsError(try JSONParser.parse("1 2"))
    XCTAssertEqual(try JSONParser.parse("\"\\ud83d\\ude00\"").string, "😀")
  }

  func testEmptyAndTinyInputsAreRaw() throws {
    for n in [0, 1, 511, 512, 4096] {
      let r = Inspector.inspect(MemorySource([UInt8](repeating: 0, count: n)))
      XCTAssertEqual(r.info?.probe, "raw", "size \(n)")
      XCTAssertEqual(r.info?.virtualSize, UInt64(n))
    }
  }

  func testMinDiskIsCeilingGiB() {
    XCTAssertEqual(ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: 1).minDisk, 1)
    XCTAssertEqual(ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: 1 << 30).minDisk, 1)
    XCTAssertEqual(ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: (1 << 30) + 1).minDisk, 2)
    XCTAssertEqual(ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: 0).minDisk, 0)
  }

  func testErrorMessagesAreOneLine() {
    let e = ImageError(.invalidField, format: "vhd", field: "footer checksum", offset: 0x40, "is 0x1234, computed 0x5678")
    XCTAssertEqual(e.description, "vhd: footer checksum at 0x40 is 0x1234, computed 0x5678")
  }

  func testHumanSizes() {
    XCTAssertEqual(InfoReport.humanSize(1 << 30), "1 GiB")
    XCTAssertEqual(InfoReport.humanSize(512), "512 B")
    XCTAssertEqual(InfoReport.humanSize(1536), "1.5 KiB")
  }
}

/// Policy and verdicts: allow-lists, severities, the expectation check.
final class PolicyTests: XCTestCase {
  func testVerdictIsWorstCountedSeverity() {
    let f = [Finding("a.x", .warning, "w"), Finding("qcow2.backing-file", .unsafe, "u"), Finding("b.y", .corrupt, "c")]
    XCTAssertEqual(Policy().verdict(f), .unsafe)
    XCTAssertEqual(Policy(allowed: ["qcow2.backing-file"]).verdict(f), .corrupt)
    XCTAssertEqual(Policy(allowed: ["qcow2.*", "b.y"]).verdict(f), .safe)
    XCTAssertEqual(Policy().verdict([]), .safe)
  }

  func testExpectationMismatch() {
    let raw = Inspector.inspect(MemorySource([UInt8](repeating: 0, count: 0)))
    XCTAssertEqual(Expectation.check(raw, expected: "qcow2")?.severity, .mismatch)
    XCTAssertNil(Expectation.check(raw, expected: "raw"))
    XCTAssertNil(Expectation.check(raw, expected: "ami"))
  }

  func testMaxVirtualSizeAndFormats() {
    let src = MemorySource([UInt8](repeating: 0, count: 4096))
    let r = Inspector.inspect(src)
    var o = CheckOptions()
    o.maxVirtualSize = 1024
    o.formats = ["qcow2", "vhd"]
    let ids = Checker.run(src, r, o).findings.map(\.id)
    XCTAssertEqual(Set(ids), ["policy.virtual-size", "policy.format-not-allowed"])
  }

  func testTargetRulesOnHandMadeInfos() {
    func result(_ i: ImageInfo) -> InspectionResult {
      InspectionResult(outcome: .identified(i), matches: [i], failures: [], size: 0, allocatedSize: nil)
    }
    var fixed = ImageInfo(probe: "vhd", qemuFormat: "vpc", diskFormat: .vhd, subformat: "fixed", virtualSize: 64 << 20)
    XCTAssertEqual(TargetRules.evaluate(.glance, result: result(fixed), declared: "vhd").map(\.id), ["glance.fixed-vhd"])
    XCTAssertEqual(TargetRules.evaluate(.azure, result: result(fixed), declared: nil).map(\.id), [])
    fixed.virtualSize = (64 << 20) + 512
    XCTAssertEqual(TargetRules.evaluate(.azure, result: result(fixed), declared: nil).map(\.id), ["azure.size-alignment"])
    let dyn = ImageInfo(probe: "vhd", qemuFormat: "vpc", diskFormat: .vhd, subformat: "dynamic", virtualSize: 64 << 20)
    XCTAssertEqual(TargetRules.evaluate(.azure, result: result(dyn), declared: nil).map(\.id), ["azure.fixed-vhd-required"])
    XCTAssertEqual(TargetRules.evaluate(.glance, result: result(dyn), declared: "vhd").map(\.id), [])
    let flat = ImageInfo(probe: "vmdk", qemuFormat: "vmdk", diskFormat: .vmdk, subformat: "monolithicFlat", virtualSize: 1 << 30)
    XCTAssertEqual(TargetRules.evaluate(.glance, result: result(flat), declared: nil).map(\.id), ["glance.vmdk-create-type"])
    XCTAssertEqual(TargetRules.evaluate(.aws, result: result(flat), declared: nil).map(\.id), ["aws.format"])
    let qcow2 = ImageInfo(probe: "qcow2", qemuFormat: "qcow2", diskFormat: .qcow2, subformat: "v3", virtualSize: 1 << 30)
    XCTAssertEqual(TargetRules.evaluate(.esxi, result: result(qcow2), declared: nil).map(\.id), ["esxi.disk-format"])
    XCTAssertEqual(TargetRules.evaluate(.gce, result: result(qcow2), declared: nil).map(\.id), ["gce.tar-gz"])
  }

  func result(_ i: ImageInfo) -> InspectionResult {
    InspectionResult(outcome: .identified(i), matches: [i], failures: [], size: 0, allocatedSize: nil)
  }

  func testMoreTargetRules() {
    var diff = ImageInfo(probe: "vhd", qemuFormat: "vpc", diskFormat: .vhd, subformat: "differencing", virtualSize: 5 << 40)
    diff.encrypted = true
    XCTAssertEqual(Set(TargetRules.evaluate(.aws, result: result(diff), declared: nil).map(\.id)),
                   ["aws.format", "aws.differencing", "aws.encrypted"])
    diff.findings = [Finding("vhd.footer-checksum", .corrupt, "x")]
    XCTAssertEqual(Set(TargetRules.evaluate(.azure, result: result(diff), declared: nil).map(\.id)),
                   ["azure.fixed-vhd-required", "azure.footer", "azure.size-limit"])
    var backed = ImageInfo(probe: "qcow2", qemuFormat: "qcow2", diskFormat: .qcow2, subformat: "v3", virtualSize: 1 << 30)
    backed.backingFilename = "/etc/passwd"
    XCTAssertEqual(TargetRules.evaluate(.glance, result: result(backed), declared: nil).map(\.id), ["glance.safety-checks"])
    let qed = ImageInfo(probe: "qed", qemuFormat: "qed", diskFormat: .qed, virtualSize: 1 << 30)
    XCTAssertEqual(Set(TargetRules.evaluate(.glance, result: result(qed), declared: nil).map(\.id)),
                   ["glance.unsupported-format", "glance.banned-format"])
    var ova = ImageInfo(probe: "ova", qemuFormat: "raw", diskFormat: .vmdk)
    ova.containerFormat = .ova
    ova.findings = [Finding("ova.descriptor-not-first", .warning, "x")]
    var v2 = ImageInfo(probe: "vmdk", qemuFormat: "vmdk", diskFormat: .vmdk, subformat: "streamOptimized", virtualSize: 1 << 30)
    v2.formatSpecific.set("version", UInt64(2))
    let sparse = ImageInfo(probe: "vmdk", qemuFormat: "vmdk", diskFormat: .vmdk, subformat: "monolithicSparse", virtualSize: 1 << 30)
    ova.children = [ChildImage(name: "a.vmdk", offset: 512, size: 1, result: result(v2)),
                    ChildImage(name: "b.vmdk", offset: 1024, size: 1, result: result(sparse))]
    XCTAssertEqual(Set(TargetRules.evaluate(.esxi, result: result(ova), declared: nil).map(\.id)),
                   ["esxi.ova-order", "esxi.ova-manifest", "esxi.vmdk-version", "esxi.stream-optimized"])
    XCTAssertEqual(TargetRules.evaluate(.glance, result: result(ova), declared: nil).map(\.id), ["glance.container-not-inspected"])
    // GCE: tar.gz holding the wrong member, then the right one with a bad size and no partition table.
    func tarGz(_ member: String, _ disk: ImageInfo) -> ImageInfo {
      var tar = ImageInfo(probe: "ova", qemuFormat: "raw", diskFormat: .raw, subformat: "tar")
      tar.children = [ChildImage(name: member, offset: 512, size: disk.virtualSize, result: result(disk))]
      var gz = ImageInfo(probe: "compressed", qemuFormat: "raw", diskFormat: .raw, subformat: "gzip")
      gz.containerFormat = .compressed
      gz.children = [ChildImage(name: "payload", offset: nil, size: nil, result: result(tar))]
      return gz
    }
    let odd = ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: (1 << 30) + 512)
    XCTAssertEqual(Set(TargetRules.evaluate(.gce, result: result(tarGz("root.img", odd)), declared: nil).map(\.id)),
                   ["gce.disk-raw"])
    XCTAssertEqual(Set(TargetRules.evaluate(.gce, result: result(tarGz("disk.raw", odd)), declared: nil).map(\.id)),
                   ["gce.size-alignment", "gce.partition-table"])
    var good = ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: 10 << 30)
    good.partitionTable = .object([("type", .string("gpt"))])
    XCTAssertEqual(TargetRules.evaluate(.gce, result: result(tarGz("disk.raw", good)), declared: nil).map(\.id), [])
    XCTAssertEqual(TargetRules.evaluate(.gce, result: result(tarGz("disk.raw", qed)), declared: nil).map(\.id), ["gce.raw-required"])
  }

  func testUnidentifiedAndAmbiguous() {
    let amb = InspectionResult(outcome: .ambiguous([]), matches: [], failures: [], size: 0, allocatedSize: nil)
    XCTAssertEqual(amb.allFindings.map(\.id), ["image.ambiguous"])
    XCTAssertEqual(TargetRules.evaluate(.aws, result: amb, declared: nil).map(\.id), ["aws.unidentified"])
    let e = ImageError(.needsSeekable, format: "input", field: "read", "x")
    let s = InspectionResult(outcome: .needsSeekable(e), matches: [], failures: [], size: 0, allocatedSize: nil)
    XCTAssertEqual(s.allFindings.map(\.id), ["input.needs-seekable"])
    XCTAssertEqual(Expectation.check(s, expected: "qcow2")?.id, "image.format-mismatch")
  }

  func testDeclaredContainerAndEmptyImage() throws {
    let empty = MemorySource([])
    var o = CheckOptions()
    o.expectFormat = "raw"
    XCTAssertEqual(Checker.run(empty, Inspector.inspect(empty), o).findings.map(\.id), ["image.empty"])
    var gz = ImageInfo(probe: "compressed", qemuFormat: "raw", diskFormat: .qcow2, subformat: "gzip", virtualSize: 1 << 20)
    gz.containerFormat = .compressed
    let r = InspectionResult(outcome: .identified(gz), matches: [gz], failures: [], size: 100, allocatedSize: nil)
    o.expectFormat = "qcow2"
    XCTAssertEqual(Checker.run(empty, r, o).findings.map(\.id), ["image.container-mismatch"])
    o.expectContainer = "compressed"
    XCTAssertEqual(Checker.run(empty, r, o).findings.map(\.id), [])
  }

  func testEsxiHostedSparseIsAWarning() {
    let sparse = ImageInfo(probe: "vmdk", qemuFormat: "vmdk", diskFormat: .vmdk, subformat: "monolithicSparse", virtualSize: 1 << 30)
    let f = TargetRules.evaluate(.esxi, result: result(sparse), declared: nil)
    XCTAssertEqual(f.map(\.id), ["esxi.hosted-sparse"])
    XCTAssertEqual(f.first?.severity, .warning)
  }

  func testVerdictOrderUnsafeThenCorruptThenMismatch() {
    XCTAssertEqual(Policy().verdict([Finding("a.b", .mismatch, "m"), Finding("c.d", .corrupt, "c")]), .corrupt)
    XCTAssertEqual(Policy().verdict([Finding("a.b", .mismatch, "m"), Finding("c.d", .unsafe, "u")]), .unsafe)
    XCTAssertEqual(Policy().verdict([Finding("a.b", .mismatch, "m"), Finding("c.d", .warning, "w")]), .mismatch)
  }
}

