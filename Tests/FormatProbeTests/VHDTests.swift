import Foundation
import XCTest
@testable import FormatProbe

/// Builds VHD footers, dynamic headers and whole images field by field, so each test mutates one
/// field and sees one effect.
struct VHDFooterBuilder {
  var cookie = Array("conectix".utf8)          // 0: cookie
  var features: UInt32 = 2                      // 8: features (bit 1 reserved, always set)
  var version: UInt32 = 0x0001_0000             // 12: file format version 1.0
  var dataOffset: UInt64 = 512                  // 16: dynamic header offset (0xFFFF... for fixed)
  var timestamp: UInt32 = 800_000_000           // 24: seconds since 2000-01-01
  var creatorApp = Array("win ".utf8)           // 28: creator application
  var creatorVersion: UInt32 = 0x000A_0000      // 32: creator version 10.0
  var creatorOS = Array("Wi2k".utf8)            // 36: creator host OS
  var originalSize: UInt64 = 8 << 20            // 40: original size
  var currentSize: UInt64 = 8 << 20             // 48: current size
  var cylinders: UInt16 = 240                   // 56: geometry cylinders (240/4/17 = 16320 sectors)
  var heads: UInt8 = 4                          // 58: geometry heads
  var sectorsPerTrack: UInt8 = 17               // 59: geometry sectors per track
  var diskType: UInt32 = 3                      // 60: 2 fixed, 3 dynamic, 4 differencing
  var checksum: UInt32? = nil                   // 64: nil = computed
  var uuid = [UInt8](repeating: 0xab, count: 16) // 68: unique id
  var savedState: UInt8 = 0                     // 84: saved state
                                                // 85: 427 reserved bytes

  var bytes: [UInt8] {
    var b = [UInt8]()
    b += cookie
    b.be(features); b.be(version); b.be(dataOffset); b.be(timestamp)
    b += creatorApp
    b.be(creatorVersion)
    b += creatorOS
    b.be(originalSize); b.be(currentSize); b.be(cylinders)
    b.append(heads); b.append(sectorsPerTrack)
    b.be(diskType)
    b.be(UInt32(0))
    b += uuid
    b.append(savedState)
    b += [UInt8](repeating: 0, count: 512 - b.count)
    let sum = ~b.reduce(UInt32(0)) { $0 &+ UInt32($1) }
    b.put(checksum ?? sum, at: 64)
    return b
  }
}

struct VHDDynamicHeaderBuilder {
  var cookie = Array("cxsparse".utf8)           // 0: cookie
  var dataOffset: UInt64 = .max                 // 8: unused
  var tableOffset: UInt64 = 1536                // 16: BAT offset
  var version: UInt32 = 0x0001_0000             // 24: header version
  var maxTableEntries: UInt32 = 4               // 28: max table entries
  var blockSize: UInt32 = 2 << 20               // 32: block size
  var checksum: UInt32? = nil                   // 36: nil = computed
  var parentUUID = [UInt8](repeating: 0, count: 16) // 40: parent unique id
  var parentTimestamp: UInt32 = 0               // 56: parent time stamp
                                                // 60: reserved
  var parentName = ""                           // 64: parent unicode name, UTF-16BE, 512 bytes
  /// 576: 8 locators: platform code, data space, data length, reserved, data offset.
  var locators: [(code: String, space: UInt32, length: UInt32, offset: UInt64)] = []

  var bytes: [UInt8] {
    var b = [UInt8]()
    b += cookie
    b.be(dataOffset); b.be(tableOffset); b.be(version); b.be(maxTableEntries); b.be(blockSize)
    b.be(UInt32(0))
    b += parentUUID
    b.be(parentTimestamp)
    b.be(UInt32(0))
    var name = [UInt8]()
    for u in parentName.utf16 { name.be(u) }
    b += name + [UInt8](repeating: 0, count: 512 - name.count)
    for i in 0..<8 {
      if i < locators.count {
        let l = locators[i]
        b += Array(l.code.utf8) + [UInt8](repeating: 0x20, count: 4 - l.code.utf8.count)
        b.be(l.space); b.be(l.length); b.be(UInt32(0)); b.be(l.offset)
      } else {
        b += [UInt8](repeating: 0, count: 24)
      }
    }
    b += [UInt8](repeating: 0, count: 1024 - b.count)
    let sum = ~b.reduce(UInt32(0)) { $0 &+ UInt32($1) }
    b.put(checksum ?? sum, at: 36)
    return b
  }
}

/// A whole dynamic VHD: footer copy, header at 512, BAT at 1536, blocks, footer.
struct VHDImageBuilder {
  var footer = VHDFooterBuilder()
  var header = VHDDynamicHeaderBuilder()
  /// BAT entries (sector numbers); missing ones are 0xFFFFFFFF.
  var bat: [UInt32] = []
  /// Number of blocks (bitmap + data) laid out after the BAT; entries point at them in order.
  var blocks = 0
  var tailFooter: [UInt8]? = nil
  var extra: [UInt8] = []

  /// Where block `n` starts when laid out after a one-sector BAT (offset of its bitmap).
  func blockSector(_ n: Int) -> UInt32 {
    let batBytes = (Int(header.maxTableEntries) * 4 + 511) / 512 * 512
    let span = 512 + Int(header.blockSize)
    return UInt32((1536 + batBytes + extra.count + n * span) / 512)
  }

  var bytes: [UInt8] {
    let f = footer.bytes
    var b = f + header.bytes
    var table = [UInt8]()
    for i in 0..<Int(header.maxTableEntries) { table.be(i < bat.count ? bat[i] : 0xFFFF_FFFF) }
    b += table + [UInt8](repeating: 0, count: (table.count + 511) / 512 * 512 - table.count)
    b += extra
    for _ in 0..<blocks { b += [UInt8](repeating: 0xff, count: 512) + [UInt8](repeating: 0x5a, count: Int(header.blockSize)) }
    b += tailFooter ?? f
    return b
  }
}

extension Array where Element == UInt8 {
  mutating func be<T: FixedWidthInteger>(_ v: T) { Swift.withUnsafeBytes(of: v.bigEndian) { append(contentsOf: $0) } }
  mutating func le<T: FixedWidthInteger>(_ v: T) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
  mutating func put(_ v: UInt32, at i: Int) { Swift.withUnsafeBytes(of: v.bigEndian) { for k in 0..<4 { self[i + k] = $0[k] } } }
  mutating func putLE<T: FixedWidthInteger>(_ v: T, at i: Int) {
    Swift.withUnsafeBytes(of: v.littleEndian) { for k in 0..<$0.count { self[i + k] = $0[k] } }
  }
}

final class VHDTests: XCTestCase {
  func context(_ bytes: [UInt8]) throws -> ProbeContext { try ProbeContext(source: MemorySource(bytes)) }

  func probe(_ bytes: [UInt8]) throws -> ImageInfo? { try VHDProbe.probe(context(bytes)) }

  func probeError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> ImageError? {
    do {
      _ = try VHDProbe.probe(context(bytes))
      XCTFail("expected an error", file: file, line: line)
    } catch let e as ImageError {
      return e
    } catch {
      XCTFail("unexpected \(error)", file: file, line: line)
    }
    return nil
  }

  func check(_ bytes: [UInt8]) throws -> CheckReport {
    let ctx = try context(bytes)
    let info = try XCTUnwrap(VHDProbe.probe(ctx))
    return VHDProbe.deepCheck(ctx, info)
  }

  func ids(_ findings: [Finding]) -> Set<String> { Set(findings.map(\.id)) }

  /// A fixed disk of `size` data bytes: zeros then the footer.
  func fixed(_ size: Int, _ configure: (inout VHDFooterBuilder) -> Void = { _ in }) -> [UInt8] {
    var f = VHDFooterBuilder()
    f.diskType = 2
    f.dataOffset = .max
    f.currentSize = UInt64(size)
    f.originalSize = UInt64(size)
    configure(&f)
    return [UInt8](repeating: 0, count: size) + f.bytes
  }

  // MARK: CRC-32C (shared with VHDX and other formats)

  func testCRC32CCheckValue() {
    XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    // 32 zero bytes: RFC 3720 B.4 test vector.
    XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
    XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xff, count: 32)), 0x62A8_AB43)
    let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    let whole = CRC32C.checksum(data)
    XCTAssertEqual(CRC32C.checksum(data[300...], seed: CRC32C.checksum(data[..<300])), whole)
    var zeroed = data
    zeroed.replaceSubrange(100..<104, with: [0, 0, 0, 0])
    XCTAssertEqual(CRC32C.checksum(data[...], zeroingFieldAt: 100), CRC32C.checksum(zeroed))
  }

  // MARK: detection and decoding

  func testDynamicDecodesEveryField() throws {
    var img = VHDImageBuilder()
    img.footer.creatorApp = Array("win ".utf8)
    let info = try XCTUnwrap(probe(img.bytes))
    XCTAssertEqual(info.qemuFormat, "vpc")
    XCTAssertEqual(info.diskFormat, .vhd)
    XCTAssertEqual(info.subformat, "dynamic")
    XCTAssertEqual(info.virtualSize, 8 << 20)
    XCTAssertEqual(info.clusterSize, 2 << 20)
    XCTAssertEqual(info.findings, [])
    let fs = info.formatSpecific.json
    XCTAssertEqual(fs["creator-app"], .string("win"))
    XCTAssertEqual(fs["creator-version"], .string("10.0"))
    XCTAssertEqual(fs["creator-os"], .string("Wi2k"))
    XCTAssertEqual(fs["timestamp-utc"], .string("2025-05-08T06:13:20Z"))
    XCTAssertEqual(VHDProbe.utc(0), "2000-01-01T00:00:00Z")
    XCTAssertEqual(VHDProbe.utc(UInt32.max), "2136-02-07T06:28:15Z")
    XCTAssertEqual(VHDProbe.utc(5_097_600), "2000-02-29T00:00:00Z")
    XCTAssertEqual(fs["disk-type"], .string("dynamic"))
    XCTAssertEqual(fs["geometry"]?["cylinders"], .uint(240))
    XCTAssertEqual(fs["uuid"], .string("abababab-abab-abab-abab-abababababab"))
    XCTAssertEqual(fs["block-size"], .uint(2 << 20))
    XCTAssertEqual(fs["max-table-entries"], .uint(4))
    XCTAssertEqual(fs["table-offset"], .uint(1536))
    XCTAssertNil(fs["parent-uuid"])
  }

  func testFixedDiskIsFoundAtTheTail() throws {
    let info = try XCTUnwrap(probe(fixed(64 << 10)))
    XCTAssertEqual(info.subformat, "fixed")
    XCTAssertEqual(info.virtualSize, 64 << 10)
    XCTAssertNil(info.clusterSize)
    XCTAssertEqual(info.findings, [])
  }

  func testShortFooterOf511Bytes() throws {
    var b = fixed(64 << 10)
    b.removeLast()
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(info.subformat, "fixed")
    XCTAssertEqual(info.virtualSize, 64 << 10)
    XCTAssertEqual(info.findings, [])
    XCTAssertTrue(info.notes.contains { $0.contains("511 bytes") })
  }

  func testFixedStreamIsAnsweredFromTheKeptTail() throws {
    let bytes = fixed(5 << 20)
    let pipe = Pipe()
    let writer = Thread {
      pipe.fileHandleForWriting.write(Data(bytes))
      try? pipe.fileHandleForWriting.close()
    }
    writer.start()
    let source = try StreamSource(fd: pipe.fileHandleForReading.fileDescriptor)
    let info = try XCTUnwrap(VHDProbe.probe(ProbeContext(source: source)))
    XCTAssertEqual(info.subformat, "fixed")
    XCTAssertEqual(info.virtualSize, 5 << 20)
  }

  func testNoCookieIsNotVHD() throws {
    XCTAssertNil(try probe([UInt8](repeating: 0, count: 4096)))
    XCTAssertNil(try probe([]))
    var b = fixed(4096)
    b[b.count - 512] = UInt8(ascii: "C")  // "Conectix"
    XCTAssertNil(try probe(b))
  }

  func testTruncatedFooterAtTheHead() throws {
    let b = Array(VHDFooterBuilder().bytes.prefix(300))
    let e = try XCTUnwrap(probeError(b))
    XCTAssertEqual(e.kind, .truncated)
    XCTAssertEqual(e.field, "hard disk footer")
  }

  func testBadFooterChecksumIsAFinding() throws {
    var img = VHDImageBuilder()
    img.footer.checksum = 0x1234
    let info = try XCTUnwrap(probe(img.bytes))
    let f = try XCTUnwrap(info.findings.first { $0.id == "vhd.footer-checksum" })
    XCTAssertEqual(f.severity, .corrupt)
    XCTAssertEqual(f.offset, 0x40)
    let computed = VHDProbe.onesComplementSum(img.footer.bytes, skipping: 64)
    XCTAssertEqual(f.message, "vhd: footer checksum at 0x40 is 0x1234, computed \(hex(computed))")
  }

  func testBadFooterChecksumOnAFixedDiskNamesTheAbsoluteOffset() throws {
    let b = fixed(4096) { $0.checksum = 7 }
    let info = try XCTUnwrap(probe(b))
    let f = try XCTUnwrap(info.findings.first { $0.id == "vhd.footer-checksum" })
    XCTAssertEqual(f.offset, 4096 + 64)
    XCTAssertTrue(f.message.hasPrefix("vhd: footer checksum at 0x1040 is 0x7, computed 0x"))
  }

  func testBadHeaderChecksumIsAFinding() throws {
    var img = VHDImageBuilder()
    img.header.checksum = 0xdead
    let info = try XCTUnwrap(probe(img.bytes))
    let f = try XCTUnwrap(info.findings.first { $0.id == "vhd.header-checksum" })
    XCTAssertEqual(f.severity, .corrupt)
    XCTAssertEqual(f.offset, 512 + 36)
    XCTAssertTrue(f.message.hasPrefix("vhd: dynamic header checksum at 0x224 is 0xdead, computed 0x"))
  }

  func testUnknownVersionsAreWarnings() throws {
    var img = VHDImageBuilder()
    img.footer.version = 0x0002_0000
    img.header.version = 0x0001_0001
    let info = try XCTUnwrap(probe(img.bytes))
    XCTAssertEqual(info.findings.map(\.id), ["vhd.version", "vhd.version"])
    XCTAssertEqual(info.findings.map(\.offset), [12, 512 + 24])
    XCTAssertEqual(Policy().verdict(info.findings), .safe)
    XCTAssertEqual(info.formatSpecific.json["file-format-version"], .string("2.0"))
  }

  func testBadDiskType() throws {
    var img = VHDImageBuilder()
    img.footer.diskType = 5
    let e = try XCTUnwrap(probeError(img.bytes))
    XCTAssertEqual(e.field, "disk type")
  }

  func testBadDynamicHeaderCookie() throws {
    var img = VHDImageBuilder()
    img.header.cookie = Array("cxsparsE".utf8)
    let e = try XCTUnwrap(probeError(img.bytes))
    XCTAssertEqual(e.field, "dynamic header cookie")
    XCTAssertEqual(e.offset, 512)
  }

  func testBlockSizeNotAPowerOfTwo() throws {
    for bs: UInt32 in [3 << 20, 0, 256, 1 << 30] {
      var img = VHDImageBuilder()
      img.header.blockSize = bs
      let e = try XCTUnwrap(probeError(img.bytes), "block size \(bs)")
      XCTAssertEqual(e.field, "block size")
      XCTAssertEqual(e.offset, 512 + 32)
    }
  }

  func testMaxTableEntriesBeyondTheFile() throws {
    var img = VHDImageBuilder()
    img.header.maxTableEntries = 4
    var b = img.bytes
    // Claim 2^32-1 entries after building: the table would need 16 GiB of a 5 KiB file.
    b.put(0xFFFF_FFFF, at: 512 + 28)
    b.put(0, at: 512 + 36)
    b.put(~b[512..<1536].reduce(UInt32(0)) { $0 &+ UInt32($1) }, at: 512 + 36)
    let e = try XCTUnwrap(probeError(b))
    XCTAssertEqual(e.kind, .truncated)
    XCTAssertEqual(e.field, "block allocation table")
  }

  func testMaxTableEntriesTooFewForTheSize() throws {
    var img = VHDImageBuilder()
    img.header.maxTableEntries = 2  // 8 MiB in 2 MiB blocks needs 4
    let e = try XCTUnwrap(probeError(img.bytes))
    XCTAssertEqual(e.field, "max table entries")
    XCTAssertEqual(e.finding, "vhd.bat-out-of-range")
  }

  func testDataOffsetBeyondTheFile() throws {
    var img = VHDImageBuilder()
    img.footer.dataOffset = 1 << 40
    let e = try XCTUnwrap(probeError(img.bytes))
    XCTAssertEqual(e.field, "data offset")
    XCTAssertEqual(e.offset, 16)
    XCTAssertEqual(e.kind, .truncated)
  }

  func testFixedCurrentSizeBeyondTheData() throws {
    let b = fixed(4096) { $0.currentSize = 1 << 20 }
    let e = try XCTUnwrap(probeError(b))
    XCTAssertEqual(e.field, "current size")
    XCTAssertEqual(e.finding, "vhd.truncated")
  }

  // MARK: virtual size rule

  func testVirtualPCPresentsTheGeometry() throws {
    for app in ["vpc ", "vs  ", "qemu"] {
      var img = VHDImageBuilder()
      img.footer.creatorApp = Array(app.utf8)
      let info = try XCTUnwrap(probe(img.bytes))
      XCTAssertEqual(info.virtualSize, 240 * 4 * 17 * 512, app)
      XCTAssertTrue(info.notes.contains { $0.contains("presents the geometry") }, app)
    }
  }

  func testFixedDiskIsCurrentSizeWhateverTheCreator() throws {
    let b = fixed(8 << 20) { $0.creatorApp = Array("vpc ".utf8) }
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(info.virtualSize, 8 << 20)
    XCTAssertTrue(info.notes.contains { $0.contains("qemu-img reports") })
  }

  func testHyperVAndUnknownCreatorsUseCurrentSize() throws {
    for app in ["win ", "vbox", "d2v ", "qem2"] {
      var img = VHDImageBuilder()
      img.footer.creatorApp = Array(app.utf8)
      let info = try XCTUnwrap(probe(img.bytes))
      XCTAssertEqual(info.virtualSize, 8 << 20, app)
      let qemuDiffers = info.notes.contains { $0.contains("qemu-img reports") }
      XCTAssertEqual(qemuDiffers, app == "vbox", app)
    }
  }

  func testMaximumGeometryUsesCurrentSize() throws {
    var img = VHDImageBuilder()
    img.footer.creatorApp = Array("qemu".utf8)
    img.footer.cylinders = 65535
    img.footer.heads = 16
    img.footer.sectorsPerTrack = 255
    XCTAssertEqual(try probe(img.bytes)?.virtualSize, 8 << 20)
  }

  // MARK: differencing

  func differencing() -> VHDImageBuilder {
    var img = VHDImageBuilder()
    img.footer.diskType = 4
    img.header.parentUUID = [UInt8](repeating: 0x11, count: 16)
    img.header.parentName = "base.vhd"
    let abs = Array("C:\\images\\base.vhd".utf16).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
    let rel = Array(".\\base.vhd".utf16).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
    let batBytes = 512
    let extraAt = UInt64(1536 + batBytes)
    img.extra = abs + [UInt8](repeating: 0, count: 512 - abs.count) + rel + [UInt8](repeating: 0, count: 512 - rel.count)
    img.header.locators = [("W2ku", 1, UInt32(abs.count), extraAt), ("W2ru", 1, UInt32(rel.count), extraAt + 512)]
    return img
  }

  func testDifferencingNamesItsParentButNeverOpensIt() throws {
    let info = try XCTUnwrap(probe(differencing().bytes))
    XCTAssertEqual(info.subformat, "differencing")
    XCTAssertEqual(info.backingFilename, "base.vhd")
    XCTAssertEqual(info.externalReferences.map(\.kind), ["parent-name", "parent-locator", "parent-locator"])
    XCTAssertEqual(info.externalReferences.map(\.name), ["base.vhd", "C:\\images\\base.vhd", ".\\base.vhd"])
    XCTAssertEqual(info.externalReferences[1].offset, 2048)
    XCTAssertEqual(info.findings.filter { $0.id == "vhd.parent-locator" }.map(\.severity), [.unsafe, .unsafe])
    XCTAssertEqual(info.findings.first { $0.id == "vhd.differencing" }?.severity, .unsafe)
    let fs = info.formatSpecific.json
    XCTAssertEqual(fs["parent-uuid"], .string("11111111-1111-1111-1111-111111111111"))
    XCTAssertEqual(fs["parent-name"], .string("base.vhd"))
    XCTAssertEqual(fs["parent-locators"]?.array?.first?["platform-code"], .string("W2ku"))
    XCTAssertEqual(Policy().verdict(info.findings), .unsafe)
  }

  func testLocatorPointingOutsideTheFile() throws {
    var img = differencing()
    img.header.locators[0].offset = 1 << 40
    let info = try XCTUnwrap(probe(img.bytes))
    let f = info.findings.filter { $0.id == "vhd.parent-locator" }
    XCTAssertEqual(f.count, 2)
    XCTAssertTrue(f[0].message.contains("outside the file"))
  }

  func testPlainDynamicDiskIsSafe() throws {
    var img = VHDImageBuilder()
    img.blocks = 2
    img.bat = [img.blockSector(0), 0xFFFF_FFFF, img.blockSector(1)]
    let r = try check(img.bytes)
    XCTAssertEqual(r.findings, [])
    XCTAssertEqual(r.counts.json["allocated-clusters"], .uint(2))
    XCTAssertEqual(r.counts.json["total-clusters"], .uint(4))
    XCTAssertEqual(r.counts.json["corruptions"], .uint(0))
  }

  // MARK: deep check (hostile)

  func testBATEntryBeyondTheFile() throws {
    var img = VHDImageBuilder()
    img.bat = [0x0100_0000]
    let r = try check(img.bytes)
    XCTAssertEqual(ids(r.findings), ["vhd.bat-out-of-range"])
    XCTAssertEqual(r.findings[0].offset, 1536)
    XCTAssertEqual(r.counts.json["corruptions"], .uint(1))
  }

  func testManyBadEntriesAreCountedButListedOnce() throws {
    var img = VHDImageBuilder()
    img.header.blockSize = 4096
    img.header.maxTableEntries = 4096
    img.footer.currentSize = 16 << 20
    img.bat = [UInt32](repeating: 0x0100_0000, count: 4096)
    let r = try check(img.bytes)
    XCTAssertEqual(r.findings.count, VHDProbe.Limits.maxListedFindings + 1)
    XCTAssertEqual(r.findings.last?.id, "vhd.more-findings")
    XCTAssertEqual(r.counts.json["corruptions"], .uint(4096))
  }

  func testTwoEntriesShareABlock() throws {
    var img = VHDImageBuilder()
    img.blocks = 1
    img.bat = [img.blockSector(0), img.blockSector(0)]
    XCTAssertEqual(ids(try check(img.bytes).findings), ["vhd.block-overlap"])
  }

  func testPartlyOverlappingBlocks() throws {
    var img = VHDImageBuilder()
    img.blocks = 2
    img.bat = [img.blockSector(0), img.blockSector(0) + 8]
    let r = try check(img.bytes)
    XCTAssertEqual(ids(r.findings), ["vhd.block-overlap"])
    XCTAssertTrue(r.findings[0].message.contains("overlap"))
  }

  func testBlockOverlapsTheBAT() throws {
    var img = VHDImageBuilder()
    img.blocks = 1
    img.bat = [3]  // sector 3 = 1536, the BAT itself
    let r = try check(img.bytes)
    XCTAssertTrue(ids(r.findings).contains("vhd.block-overlap"))
    XCTAssertTrue(r.findings.contains { $0.message.contains("block allocation table") })
  }

  func testTruncatedLastBlock() throws {
    var img = VHDImageBuilder()
    img.blocks = 1
    img.bat = [img.blockSector(0)]
    var b = img.bytes
    let footer = Array(b.suffix(512))
    b.removeLast(512 + 4096)
    b += footer
    XCTAssertEqual(ids(try check(b).findings), ["vhd.truncated"])
  }

  func testFooterCopyMismatch() throws {
    var img = VHDImageBuilder()
    var other = img.footer
    other.timestamp += 1
    img.tailFooter = other.bytes
    let r = try check(img.bytes)
    XCTAssertEqual(ids(r.findings), ["vhd.footer-mismatch"])
  }

  func testFooterMissingAtTheEnd() throws {
    var img = VHDImageBuilder()
    img.tailFooter = [UInt8](repeating: 0, count: 512)
    let r = try check(img.bytes)
    XCTAssertEqual(ids(r.findings), ["vhd.footer-mismatch"])
    XCTAssertTrue(r.findings[0].message.contains("missing"))
  }

  func testBlockBeyondTheVirtualSizeIsAWarning() throws {
    var img = VHDImageBuilder()
    img.header.maxTableEntries = 8
    img.blocks = 1
    img.bat = [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, img.blockSector(0)]
    let r = try check(img.bytes)
    XCTAssertEqual(r.findings.map(\.severity), [.warning])
    XCTAssertEqual(Policy().verdict(r.findings), .safe)
  }

  func testFixedTrailingData() throws {
    var b = fixed(8192) { $0.currentSize = 4096 }
    b[0] = 1
    let ctx = try context(b)
    let info = try XCTUnwrap(VHDProbe.probe(ctx))
    XCTAssertEqual(info.virtualSize, 4096)
    XCTAssertEqual(ids(VHDProbe.deepCheck(ctx, info).findings), ["vhd.trailing-data"])
  }

  // MARK: real images

  func testGeneratedImagesAreSafe() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    for entry in try Fixtures.manifest("vhd") where entry.file.hasSuffix(".vhd") {
      let ctx = try ProbeContext(source: FileSource(path: Fixtures.path("vhd", entry.file)))
      let info = try XCTUnwrap(VHDProbe.probe(ctx), entry.file)
      let r = VHDProbe.deepCheck(ctx, info)
      XCTAssertEqual(r.findings, [], entry.file)
      XCTAssertEqual(r.counts.json["corruptions"], .uint(0), entry.file)
      if entry.file == "vhd-converted.vhd" {
        XCTAssertEqual(r.counts.json["allocated-clusters"], .uint(2), entry.file)
      }
    }
  }

  func testMoreAllocatedBlocksThanTrackedIsCheckIncomplete() throws {
    // 2^23 + 1 entries take several seconds in a debug build: opt in with IMGTOOL_SLOW_TESTS=1.
    try XCTSkipUnless(ProcessInfo.processInfo.environment["IMGTOOL_SLOW_TESTS"] == "1",
                      "walks 2^23 + 1 BAT entries; set IMGTOOL_SLOW_TESTS=1 to run it")
    // One allocated block past Limits.maxTrackedBlocks, every block valid: 512-byte blocks
    // (1 KiB with the sector bitmap) laid out one after another behind a 32 MiB BAT. The file
    // is sparse: only the footers, the header and the BAT are written (8 GiB apparent size).
    let entries = VHDProbe.Limits.maxTrackedBlocks + 1
    var img = VHDImageBuilder()
    img.header.blockSize = 512
    img.header.maxTableEntries = UInt32(entries)
    img.footer.currentSize = UInt64(entries) * 512
    img.footer.originalSize = img.footer.currentSize
    let first = img.blockSector(0)
    let table = (0..<UInt32(entries)).map { (first + 2 * $0).bigEndian }.withUnsafeBytes { Array($0) }
    let footer = img.footer.bytes
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("vhd-check-incomplete-\(getpid()).vhd").path
    defer { unlink(path) }
    XCTAssert(FileManager.default.createFile(atPath: path, contents: Data(footer + img.header.bytes + table)))
    let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
    try handle.seek(toOffset: (UInt64(first) + 2 * UInt64(entries)) * 512)
    try handle.write(contentsOf: footer)
    try handle.close()
    let ctx = try ProbeContext(source: FileSource(path: path))
    let r = VHDProbe.deepCheck(ctx, try XCTUnwrap(VHDProbe.probe(ctx)))
    XCTAssertEqual(ids(r.findings), ["vhd.check-incomplete"])
    XCTAssertEqual(r.findings.first?.severity, .warning)
    XCTAssertEqual(r.counts.json["corruptions"], .uint(0))
    XCTAssertEqual(r.counts.json["check-errors"], .uint(1))
    XCTAssertEqual(r.counts.json["allocated-clusters"], .uint(UInt64(entries)))
  }


  func testBATNotKeptByAStreamIsNeedsSeekable() throws {
    // The BAT at 128 KiB, no blocks allocated: a stream keeping the first 64 KiB and the
    // trailing footer no longer holds it, so the check says it needs a file rather than guessing.
    var img = VHDImageBuilder()
    img.header.tableOffset = 128 << 10
    var bytes = img.footer.bytes + img.header.bytes
    bytes += [UInt8](repeating: 0, count: (128 << 10) - bytes.count) + [UInt8](repeating: 0xff, count: 512)
    bytes += img.footer.bytes
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("vhd-stream-\(getpid()).vhd").path
    defer { unlink(path) }
    XCTAssert(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    func streamCheck(head: Int) throws -> CheckReport {
      let fd = open(path, O_RDONLY)
      defer { close(fd) }
      let ctx = try ProbeContext(source: StreamSource(fd: fd, headLimit: head, tailLimit: 512))
      return VHDProbe.deepCheck(ctx, try XCTUnwrap(VHDProbe.probe(ctx)))
    }
    // The BAT kept in the head: nothing to report.
    XCTAssertEqual(try streamCheck(head: 256 << 10).findings, [])
    let r = try streamCheck(head: 64 << 10)
    XCTAssertEqual(ids(r.findings), ["vhd.needs-seekable"])
    XCTAssertEqual(r.findings.first?.severity, .warning)
    XCTAssertEqual(r.counts.json["corruptions"], .uint(0))
    XCTAssertEqual(r.counts.json["check-errors"], .uint(1))
  }
}
