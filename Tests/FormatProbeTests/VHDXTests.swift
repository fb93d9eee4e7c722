import Foundation
import XCTest
@testable import FormatProbe

/// A GUID string in the Microsoft mixed-endian byte order VHDX stores.
func msGUID(_ s: String) -> [UInt8] {
  let hexDigits = s.filter { $0 != "-" }
  var b = [UInt8]()
  var i = hexDigits.startIndex
  while i < hexDigits.endIndex {
    let j = hexDigits.index(i, offsetBy: 2)
    b.append(UInt8(hexDigits[i..<j], radix: 16) ?? 0)
    i = j
  }
  return [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + b[8..<16]
}

/// Builds a VHDX in memory, field by field:
/// 0 file identifier, 64/128 KiB headers, 192/256 KiB region tables, 1 MiB log, 2 MiB metadata,
/// 3 MiB BAT, payload blocks from 4 MiB.
struct VHDXBuilder {
  static let mib = 1 << 20
  static let bat = "2dc27766-f623-4200-9d64-115e9bfd4a08"
  static let metadata = "8b7ca206-4790-4b9a-b8fe-575f050f886e"

  struct Header {
    var signature = Array("head".utf8)          // 0: signature
    var checksum: UInt32? = nil                 // 4: CRC-32C, nil = computed
    var sequence: UInt64 = 10                   // 8: sequence number
    var fileWriteGUID = msGUID("11111111-2222-3333-4444-555555555555") // 16
    var dataWriteGUID = msGUID("66666666-7777-8888-9999-aaaaaaaaaaaa") // 32
    var logGUID = [UInt8](repeating: 0, count: 16) // 48: zero = empty log
    var logVersion: UInt16 = 0                  // 64
    var version: UInt16 = 1                     // 66
    var logLength: UInt32 = UInt32(VHDXBuilder.mib) // 68
    var logOffset: UInt64 = UInt64(VHDXBuilder.mib) // 72
                                                // 80: reserved to 4 KiB
    var bytes: [UInt8] {
      var b = signature
      b.le(UInt32(0)); b.le(sequence)
      b += fileWriteGUID + dataWriteGUID + logGUID
      b.le(logVersion); b.le(version); b.le(logLength); b.le(logOffset)
      b += [UInt8](repeating: 0, count: 4096 - b.count)
      b.putLE(checksum ?? CRC32C.checksum(b), at: 4)
      return b
    }
  }

  struct Region {
    var guid: String                            // 0: guid
    var offset: UInt64                          // 16: file offset
    var length: UInt32                          // 24: length
    var required = true                         // 28: bit 0 required
  }

  struct RegionTable {
    var signature = Array("regi".utf8)          // 0: signature
    var checksum: UInt32? = nil                 // 4: CRC-32C over 64 KiB
    var entryCount: UInt32? = nil               // 8: nil = regions.count
                                                // 12: reserved
    func bytes(_ regions: [Region]) -> [UInt8] {
      var b = signature
      b.le(UInt32(0)); b.le(entryCount ?? UInt32(regions.count)); b.le(UInt32(0))
      for r in regions {
        b += msGUID(r.guid)
        b.le(r.offset); b.le(r.length); b.le(UInt32(r.required ? 1 : 0))
      }
      b += [UInt8](repeating: 0, count: 65536 - b.count)
      b.putLE(checksum ?? CRC32C.checksum(b), at: 4)
      return b
    }
  }

  struct Item {
    var guid: String                            // 0: item id
    var offset: UInt32                          // 16: offset in the metadata region
    var length: UInt32? = nil                   // 20: nil = data.count
    var flags: UInt32 = 6                       // 24: bit 0 user, 1 virtual disk, 2 required
    var data: [UInt8]
  }

  var creator = "imgtool tests"
  var headers = [Header(sequence: 10), Header(sequence: 11)]
  var tables = [RegionTable(), RegionTable()]
  var regions = [Region(guid: VHDXBuilder.bat, offset: 3 << 20, length: 1 << 20),
                 Region(guid: VHDXBuilder.metadata, offset: 2 << 20, length: 1 << 20)]
  var metadataSignature = Array("metadata".utf8)
  var blockSize: UInt32 = 1 << 20
  var fileFlags: UInt32 = 0                     // bit 0 leave blocks allocated, bit 1 has parent
  var virtualSize: UInt64 = 4 << 20
  var logicalSectorSize: UInt32 = 512
  var physicalSectorSize: UInt32 = 4096
  var extraItems: [Item] = []
  var parentLocator: [(String, String)]? = nil
  var bat: [UInt64] = []
  /// Payload blocks of `blockSize` bytes laid out from 4 MiB.
  var blocks = 0
  /// Put a valid log entry ("loge") carrying the first header's log guid at the log offset.
  var logEntry = false
  var truncateTo: Int? = nil

  static func present(_ n: Int, state: UInt64 = 6) -> UInt64 { UInt64(4 + n) << 20 | state }

  var items: [Item] {
    var sizes = [UInt8](); sizes.le(virtualSize)
    var params = [UInt8](); params.le(blockSize); params.le(fileFlags)
    var logical = [UInt8](); logical.le(logicalSectorSize)
    var physical = [UInt8](); physical.le(physicalSectorSize)
    var list = [
      Item(guid: "caa16737-fa36-4d43-b3b6-33f0aa44e76b", offset: 0x10000, flags: 4, data: params),
      Item(guid: "2fa54224-cd1b-4876-b211-5dbed83bf4b8", offset: 0x10100, data: sizes),
      Item(guid: "beca12ab-b2e6-4523-93ef-c309e000c746", offset: 0x10200,
           data: msGUID("01234567-89ab-cdef-0123-456789abcdef")),
      Item(guid: "8141bf1d-a96f-4709-ba47-f233a8faab5f", offset: 0x10300, data: logical),
      Item(guid: "cda348c7-445d-4471-9cc9-e9885251c556", offset: 0x10400, data: physical),
    ]
    if let parentLocator {
      // Locator header: type guid, reserved, count; then 12-byte entries; then UTF-16LE text.
      var b = msGUID("b04aefb7-d19e-4a81-b789-25b8e9445913")
      b.le(UInt16(0)); b.le(UInt16(parentLocator.count))
      var text = [UInt8]()
      let textStart = 20 + 12 * parentLocator.count
      var entries = [UInt8]()
      for (k, v) in parentLocator {
        let key = Array(k.utf16).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        let value = Array(v.utf16).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        entries.le(UInt32(textStart + text.count)); text += key
        entries.le(UInt32(textStart + text.count)); text += value
        entries.le(UInt16(key.count)); entries.le(UInt16(value.count))
      }
      list.append(Item(guid: "a8d35f2d-b30b-454d-abf7-d3d84834ab0c", offset: 0x11000, data: b + entries + text))
    }
    return list + extraItems
  }

  var bytes: [UInt8] {
    let mib = VHDXBuilder.mib
    var f = [UInt8](repeating: 0, count: 4 * mib + blocks * Int(blockSize))
    f.replaceSubrange(0..<8, with: Array("vhdxfile".utf8))
    let c = Array(creator.utf16).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
    f.replaceSubrange(8..<(8 + c.count), with: c)
    for (i, h) in headers.enumerated() { f.replaceSubrange((64 << 10) * (i + 1)..<((64 << 10) * (i + 1) + 4096), with: h.bytes) }
    for (i, t) in tables.enumerated() {
      let at = (192 + 64 * i) << 10
      f.replaceSubrange(at..<(at + 65536), with: t.bytes(regions))
    }
    // Metadata region at 2 MiB.
    let md = 2 * mib
    var table = metadataSignature
    table.le(UInt16(0)); table.le(UInt16(items.count)); table += [UInt8](repeating: 0, count: 20)
    for it in items {
      table += msGUID(it.guid)
      table.le(it.offset); table.le(it.length ?? UInt32(it.data.count)); table.le(it.flags); table.le(UInt32(0))
      let at = md + Int(it.offset)
      if at + it.data.count <= f.count, it.offset < (1 << 20) {
        f.replaceSubrange(at..<(at + it.data.count), with: it.data)
      }
    }
    f.replaceSubrange(md..<(md + table.count), with: table)
    // BAT at 3 MiB.
    var b = [UInt8]()
    for e in bat { b.le(e) }
    f.replaceSubrange((3 * mib)..<(3 * mib + b.count), with: b)
    for n in 0..<blocks { f[4 * mib + n * Int(blockSize)] = 0x5a }
    if logEntry {
      var e = Array("loge".utf8)
      e.le(UInt32(0)); e.le(UInt32(4096)); e.le(UInt32(0)); e.le(UInt64(1)); e.le(UInt32(0)); e.le(UInt32(0))
      e += headers[0].logGUID
      e.le(UInt64(f.count)); e.le(UInt64(f.count))
      e += [UInt8](repeating: 0, count: 4096 - e.count)
      e.putLE(CRC32C.checksum(e), at: 4)
      f.replaceSubrange(mib..<(mib + 4096), with: e)
    }
    if let truncateTo { f.removeLast(f.count - truncateTo) }
    return f
  }
}

final class VHDXTests: XCTestCase {
  func context(_ bytes: [UInt8]) throws -> ProbeContext { try ProbeContext(source: MemorySource(bytes)) }

  func probe(_ b: VHDXBuilder) throws -> ImageInfo? { try VHDXProbe.probe(context(b.bytes)) }

  func probeError(_ b: VHDXBuilder, file: StaticString = #filePath, line: UInt = #line) -> ImageError? {
    do {
      _ = try VHDXProbe.probe(context(b.bytes))
      XCTFail("expected an error", file: file, line: line)
    } catch let e as ImageError {
      return e
    } catch {
      XCTFail("unexpected \(error)", file: file, line: line)
    }
    return nil
  }

  func check(_ b: VHDXBuilder) throws -> CheckReport {
    let ctx = try context(b.bytes)
    let info = try XCTUnwrap(VHDXProbe.probe(ctx))
    return VHDXProbe.deepCheck(ctx, info)
  }

  func ids(_ findings: [Finding]) -> Set<String> { Set(findings.map(\.id)) }

  // MARK: decoding

  func testValidImageDecodes() throws {
    let info = try XCTUnwrap(probe(VHDXBuilder()))
    XCTAssertEqual(info.qemuFormat, "vhdx")
    XCTAssertEqual(info.diskFormat, .vhdx)
    XCTAssertEqual(info.subformat, "dynamic")
    XCTAssertEqual(info.virtualSize, 4 << 20)
    XCTAssertEqual(info.clusterSize, 1 << 20)
    XCTAssertEqual(info.findings, [])
    let fs = info.formatSpecific.json
    XCTAssertEqual(fs["creator"], .string("imgtool tests"))
    XCTAssertEqual(fs["header-sequence"], .uint(11))
    XCTAssertEqual(fs["current-header"], .uint(2))
    XCTAssertEqual(fs["block-size"], .uint(1 << 20))
    XCTAssertEqual(fs["logical-sector-size"], .uint(512))
    XCTAssertEqual(fs["physical-sector-size"], .uint(4096))
    XCTAssertEqual(fs["log-length"], .uint(1 << 20))
    XCTAssertEqual(fs["log-guid"], .string("00000000-0000-0000-0000-000000000000"))
    XCTAssertEqual(fs["file-write-guid"], .string("11111111-2222-3333-4444-555555555555"))
    XCTAssertEqual(fs["virtual-disk-id"], .string("01234567-89ab-cdef-0123-456789abcdef"))
    XCTAssertEqual(fs["has-parent"], .bool(false))
    XCTAssertEqual(fs["chunk-ratio"], .uint(4096))
    XCTAssertEqual(fs["bat-entries"], .uint(4))
  }

  func testNotVHDX() throws {
    XCTAssertNil(try VHDXProbe.probe(context([UInt8](repeating: 0, count: 4096))))
    XCTAssertNil(try VHDXProbe.probe(context(Array("vhdxfilX".utf8))))
  }

  func testFixedSubformatFromLeaveBlockAllocated() throws {
    var b = VHDXBuilder()
    b.fileFlags = 1
    XCTAssertEqual(try probe(b)?.subformat, "fixed")
  }

  func testHigherSequenceHeaderIsCurrent() throws {
    var b = VHDXBuilder()
    b.headers[0].sequence = 99
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(info.formatSpecific.json["current-header"], .uint(1))
    XCTAssertEqual(info.formatSpecific.json["header-sequence"], .uint(99))
  }

  func testTruncatedBeforeHeaders() throws {
    var b = VHDXBuilder()
    b.truncateTo = 66000
    let e = try XCTUnwrap(probeError(b))
    XCTAssertEqual(e.finding, "vhdx.header-checksum")
  }

  // MARK: headers

  func testOneBadHeaderStillWorks() throws {
    var b = VHDXBuilder()
    b.headers[1].checksum = 0x1234
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(info.formatSpecific.json["current-header"], .uint(1))
    let f = try XCTUnwrap(info.findings.first)
    XCTAssertEqual(f.id, "vhdx.header-checksum")
    XCTAssertEqual(f.severity, .corrupt)
    XCTAssertEqual(f.offset, 0x20004)
    XCTAssertTrue(f.message.hasPrefix("vhdx: header 2 checksum at 0x20004 is 0x1234, computed 0x"))
    XCTAssertEqual(info.formatSpecific.json["headers"]?.array?.map { $0["valid"] }, [.bool(true), .bool(false)])
  }

  func testBadHeaderSignature() throws {
    var b = VHDXBuilder()
    b.headers[0].signature = Array("hEad".utf8)
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(ids(info.findings), ["vhdx.header-checksum"])
  }

  func testBothHeadersBad() throws {
    var b = VHDXBuilder()
    b.headers[0].checksum = 1
    b.headers[1].checksum = 2
    let e = try XCTUnwrap(probeError(b))
    XCTAssertEqual(e.finding, "vhdx.header-checksum")
    XCTAssertEqual(e.field, "header")
  }

  func testUnknownVersion() throws {
    var b = VHDXBuilder()
    b.headers[1].version = 2
    XCTAssertEqual(probeError(b)?.kind, .unsupported)
  }

  // MARK: region tables

  func testOneBadRegionTable() throws {
    var b = VHDXBuilder()
    b.tables[0].checksum = 5
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(ids(info.findings), ["vhdx.region-checksum"])
    XCTAssertEqual(info.findings[0].offset, 0x30004)
  }

  func testBothRegionTablesBad() throws {
    var b = VHDXBuilder()
    b.tables[0].checksum = 5
    b.tables[1].signature = Array("rEgi".utf8)
    XCTAssertEqual(probeError(b)?.finding, "vhdx.region-checksum")
  }

  func testRegionTableEntryCountOverflow() throws {
    var b = VHDXBuilder()
    b.tables[0].entryCount = 2048
    b.tables[1].entryCount = 0xFFFF_FFFF
    let e = try XCTUnwrap(probeError(b))
    XCTAssertEqual(e.finding, "vhdx.region-checksum")
    XCTAssertTrue(e.detail.contains("2048, limit 2047"))
  }

  func testRegionTablesDisagree() throws {
    var b = VHDXBuilder()
    b.tables[1].entryCount = 1
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(ids(info.findings), ["vhdx.region-mismatch"])
  }

  func testRegionsOverlap() throws {
    var b = VHDXBuilder()
    b.regions[0].offset = 2 << 20  // BAT on top of the metadata region
    let info = try XCTUnwrap(probe(b))
    XCTAssertTrue(ids(info.findings).contains("vhdx.region-overlap"))
  }

  func testRegionOverlapsTheLog() throws {
    var b = VHDXBuilder()
    b.regions[0].offset = 1 << 20
    XCTAssertTrue(ids(try XCTUnwrap(probe(b)).findings).contains("vhdx.region-overlap"))
  }

  func testRegionBeyondTheFileOrMisaligned() throws {
    var b = VHDXBuilder()
    b.regions[0].offset = 1 << 40
    XCTAssertEqual(ids(try XCTUnwrap(probe(b)).findings), ["vhdx.region-range"])
    b.regions[0].offset = (3 << 20) + 4096
    XCTAssertTrue(ids(try XCTUnwrap(probe(b)).findings).contains("vhdx.region-range"))
  }

  func testMetadataRegionBeyondTheFile() throws {
    var b = VHDXBuilder()
    b.regions[1].offset = 1 << 40
    XCTAssertEqual(probeError(b)?.finding, "vhdx.region-range")
  }

  func testUnknownRequiredRegion() throws {
    var b = VHDXBuilder()
    b.regions.append(.init(guid: "deadbeef-0000-0000-0000-000000000000", offset: 4 << 20, length: 1 << 20))
    b.blocks = 1
    XCTAssertEqual(ids(try XCTUnwrap(probe(b)).findings), ["vhdx.unknown-region"])
    b.regions[2].required = false
    XCTAssertEqual(try XCTUnwrap(probe(b)).findings, [])
  }

  func testMissingBATRegion() throws {
    var b = VHDXBuilder()
    b.regions.removeFirst()
    XCTAssertEqual(probeError(b)?.field, "region table")
  }

  // MARK: metadata

  func testMetadataItemBeyondTheRegion() throws {
    var b = VHDXBuilder()
    b.extraItems = [.init(guid: "12345678-0000-0000-0000-000000000000", offset: 0x100000 - 4, length: 8, flags: 0, data: [])]
    XCTAssertEqual(probeError(b)?.finding, "vhdx.metadata-range")
  }

  func testMetadataItemInsideTheTable() throws {
    var b = VHDXBuilder()
    b.extraItems = [.init(guid: "12345678-0000-0000-0000-000000000000", offset: 0x100, length: 8, flags: 0, data: [])]
    XCTAssertEqual(probeError(b)?.finding, "vhdx.metadata-range")
  }

  func testBadMetadataSignature() throws {
    var b = VHDXBuilder()
    b.metadataSignature = Array("metadatA".utf8)
    XCTAssertEqual(probeError(b)?.field, "metadata table signature")
  }

  func testUnknownRequiredMetadata() throws {
    var b = VHDXBuilder()
    b.extraItems = [.init(guid: "12345678-0000-0000-0000-000000000000", offset: 0x12000, flags: 4, data: [1, 2, 3, 4])]
    XCTAssertEqual(ids(try XCTUnwrap(probe(b)).findings), ["vhdx.unknown-metadata"])
  }

  func testBlockSizeOutOfRange() throws {
    for bs: UInt32 in [512 << 10, 512 << 20, 3 << 20, 0] {
      var b = VHDXBuilder()
      b.blockSize = bs
      XCTAssertEqual(probeError(b)?.field, "block size", "\(bs)")
    }
  }

  func testSectorSizes() throws {
    var b = VHDXBuilder()
    b.logicalSectorSize = 1024
    XCTAssertEqual(probeError(b)?.field, "logical sector size")
    b = VHDXBuilder()
    b.physicalSectorSize = 0
    XCTAssertEqual(probeError(b)?.field, "physical sector size")
    b = VHDXBuilder()
    b.logicalSectorSize = 4096
    XCTAssertEqual(try probe(b)?.formatSpecific.json["chunk-ratio"], .uint(32768))
  }

  func testVirtualSizeLimit() throws {
    var b = VHDXBuilder()
    b.virtualSize = 65 << 40
    XCTAssertEqual(probeError(b)?.kind, .limitExceeded)
  }

  func testMissingRequiredItem() throws {
    var b = VHDXBuilder()
    b.virtualSize = 4 << 20
    var bytes = b.bytes
    // Turn the virtual disk size item's id into another guid.
    let at = (2 << 20) + 32 + 32
    bytes[at] ^= 0xff
    XCTAssertThrowsError(try VHDXProbe.probe(context(bytes))) { e in
      XCTAssertTrue((e as? ImageError)?.detail.contains("virtual disk size") ?? false)
    }
  }

  func testBATRegionTooSmall() throws {
    var b = VHDXBuilder()
    b.virtualSize = 1 << 40  // 2^20 blocks of 1 MiB need 8 MiB of BAT
    XCTAssertEqual(ids(try XCTUnwrap(probe(b)).findings), ["vhdx.bat-size"])
  }

  // MARK: differencing and log

  func testDifferencingWithParentLocator() throws {
    var b = VHDXBuilder()
    b.fileFlags = 2
    b.parentLocator = [("parent_linkage", "{83ff5ea8-0000-0000-0000-000000000000}"),
                       ("relative_path", "..\\base.vhdx"), ("absolute_win32_path", "C:\\vm\\base.vhdx")]
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(info.subformat, "differencing")
    XCTAssertEqual(info.backingFilename, "..\\base.vhdx")
    XCTAssertEqual(info.externalReferences.map(\.name), ["..\\base.vhdx", "C:\\vm\\base.vhdx"])
    XCTAssertEqual(info.externalReferences.map(\.kind), ["parent-locator", "parent-locator"])
    XCTAssertEqual(info.findings.filter { $0.id == "vhdx.parent-locator" }.count, 2)
    XCTAssertEqual(info.findings.first { $0.id == "vhdx.differencing" }?.severity, .unsafe)
    XCTAssertEqual(info.formatSpecific.json["parent-linkage"], .string("{83ff5ea8-0000-0000-0000-000000000000}"))
    XCTAssertEqual(Policy().verdict(info.findings), .unsafe)
  }

  func testParentLocatorEntryOutsideTheItem() throws {
    var b = VHDXBuilder()
    b.fileFlags = 2
    b.parentLocator = [("relative_path", "x")]
    var bytes = b.bytes
    // Key offset of the first entry (item at 2 MiB + 0x11000, entries after 20 bytes).
    bytes.putLE(UInt32(0x7fff_0000), at: (2 << 20) + 0x11000 + 20)
    XCTAssertThrowsError(try VHDXProbe.probe(context(bytes))) { e in
      XCTAssertEqual((e as? ImageError)?.finding, "vhdx.metadata-range")
    }
  }

  func testLogNotReplayed() throws {
    var b = VHDXBuilder()
    b.headers[0].logGUID = msGUID("abcdef01-0000-0000-0000-000000000001")
    b.headers[1].logGUID = b.headers[0].logGUID
    b.logEntry = true
    let info = try XCTUnwrap(probe(b))
    let f = try XCTUnwrap(info.findings.first { $0.id == "vhdx.log-not-replayed" })
    XCTAssertEqual(f.severity, .unsafe)
    XCTAssertEqual(Policy().verdict(info.findings), .unsafe)
  }

  func testLogGUIDWithoutEntriesIsAWarning() throws {
    var b = VHDXBuilder()
    b.headers[1].logGUID = msGUID("abcdef01-0000-0000-0000-000000000001")
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(info.findings.map(\.severity), [.warning])
    XCTAssertEqual(info.findings.first?.id, "vhdx.log-not-replayed")
  }

  func testLogEntryWithAnotherGUIDDoesNotCount() throws {
    var b = VHDXBuilder()
    b.headers[0].logGUID = msGUID("abcdef01-0000-0000-0000-000000000001")
    b.headers[1].logGUID = msGUID("abcdef01-0000-0000-0000-000000000002")
    b.logEntry = true  // written with header 1's guid; header 2 is current
    XCTAssertEqual(try XCTUnwrap(probe(b)).findings.map(\.severity), [.warning])
  }

  func testLogBeyondTheFile() throws {
    var b = VHDXBuilder()
    b.headers[1].logOffset = 1 << 40
    XCTAssertEqual(ids(try XCTUnwrap(probe(b)).findings), ["vhdx.log-range"])
  }

  // MARK: deep check

  func testAllocatedBlocksAreSafe() throws {
    var b = VHDXBuilder()
    b.blocks = 2
    b.bat = [VHDXBuilder.present(0), 2, VHDXBuilder.present(1), 0]
    let r = try check(b)
    XCTAssertEqual(r.findings, [])
    XCTAssertEqual(r.counts.json["allocated-clusters"], .uint(2))
    XCTAssertEqual(r.counts.json["total-clusters"], .uint(4))
    XCTAssertEqual(r.counts.json["corruptions"], .uint(0))
  }

  func testUndefinedBlockState() throws {
    var b = VHDXBuilder()
    b.bat = [4]
    XCTAssertEqual(ids(try check(b).findings), ["vhdx.bat-state"])
    b.bat = [VHDXBuilder.present(0, state: 7)]  // partially present without a parent
    b.blocks = 1
    XCTAssertEqual(ids(try check(b).findings), ["vhdx.bat-state"])
  }

  func testSectorBitmapEntryWithoutParent() throws {
    // With 1 MiB blocks and 512-byte sectors the chunk ratio is 4096: entry 4096 is a bitmap.
    var b = VHDXBuilder()
    b.virtualSize = 4097 << 20
    b.bat = [UInt64](repeating: 0, count: 4096) + [VHDXBuilder.present(0)]
    b.blocks = 1
    XCTAssertEqual(ids(try check(b).findings), ["vhdx.bat-state"])
  }

  func testBlockBeyondTheFile() throws {
    var b = VHDXBuilder()
    b.bat = [UInt64(1 << 30) << 20 | 6]
    let r = try check(b)
    XCTAssertEqual(ids(r.findings), ["vhdx.bat-out-of-range"])
    XCTAssertEqual(r.findings[0].offset, 3 << 20)
  }

  func testBlockAtOffsetZero() throws {
    var b = VHDXBuilder()
    b.bat = [6]
    XCTAssertEqual(ids(try check(b).findings), ["vhdx.bat-out-of-range"])
  }

  func testTruncatedBlock() throws {
    var b = VHDXBuilder()
    b.blocks = 1
    b.bat = [VHDXBuilder.present(0)]
    b.truncateTo = (4 << 20) + 4096
    XCTAssertEqual(ids(try check(b).findings), ["vhdx.truncated"])
  }

  func testBlockOverlapsMetadata() throws {
    var b = VHDXBuilder()
    b.bat = [UInt64(2) << 20 | 6]
    let r = try check(b)
    XCTAssertEqual(ids(r.findings), ["vhdx.block-overlap"])
    XCTAssertTrue(r.findings[0].message.contains("metadata region"))
  }

  func testTwoBlocksShareAnOffset() throws {
    var b = VHDXBuilder()
    b.blocks = 1
    b.bat = [VHDXBuilder.present(0), VHDXBuilder.present(0)]
    let r = try check(b)
    XCTAssertEqual(ids(r.findings), ["vhdx.block-overlap"])
    XCTAssertTrue(r.findings[0].message.contains("same block"))
  }

  func testLargeBlocksOverlapPartly() throws {
    var b = VHDXBuilder()
    b.blockSize = 8 << 20
    b.virtualSize = 16 << 20
    b.blocks = 2
    b.bat = [VHDXBuilder.present(0), VHDXBuilder.present(4)]  // 4 MiB apart, 8 MiB each
    XCTAssertEqual(ids(try check(b).findings), ["vhdx.block-overlap"])
  }

  // MARK: real images

  func testGeneratedImagesAreSafe() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    for entry in try Fixtures.manifest("vhd") where entry.file.hasSuffix(".vhdx") {
      let path = try Fixtures.path("vhd", entry.file)
      let ctx = try ProbeContext(source: FileSource(path: path))
      let info = try XCTUnwrap(VHDXProbe.probe(ctx), entry.file)
      let r = VHDXProbe.deepCheck(ctx, info)
      XCTAssertEqual(r.findings, [], entry.file)
      XCTAssertEqual(r.counts.json["corruptions"], .uint(0), entry.file)
      // qemu-img check agrees there is nothing to repair.
      let (status, out) = Fixtures.run(["qemu-img", "check", "--output=json", "-f", "vhdx", path])
      XCTAssertEqual(status, 0, out)
      // Data in blocks 0, 1 and 2 of 1 MiB; qemu's fixed images are fully present only with
      // block_state_zero=off (otherwise every entry is ZERO, with no offset).
      let allocated: [String: UInt64] = ["vhdx-converted.vhdx": 3, "vhdx-fixed-4m-allocated.vhdx": 4,
                                         "vhdx-fixed-4m.vhdx": 0, "vhdx-dynamic-default.vhdx": 0]
      if let want = allocated[entry.file] {
        XCTAssertEqual(r.counts.json["allocated-clusters"], .uint(want), entry.file)
      }
    }
  }

  func testManyBadEntriesAreCountedButListedOnce() throws {
    // 60 entries in the undefined state 4: the first Limits.maxListedFindings are listed, then
    // one vhdx.more-findings; all 60 are counted.
    var b = VHDXBuilder()
    b.virtualSize = 64 << 20
    b.bat = [UInt64](repeating: 4, count: 60)
    let r = try check(b)
    XCTAssertEqual(r.findings.count, VHDXProbe.Limits.maxListedFindings + 1)
    XCTAssertEqual(r.findings.filter { $0.id == "vhdx.bat-state" }.count, VHDXProbe.Limits.maxListedFindings)
    let last = try XCTUnwrap(r.findings.last)
    XCTAssertEqual(last.id, "vhdx.more-findings")
    XCTAssertEqual(last.severity, .info)
    XCTAssertEqual(r.counts.json["corruptions"], .uint(60))
    // Exactly the listed number of problems: no vhdx.more-findings.
    b.bat = [UInt64](repeating: 4, count: VHDXProbe.Limits.maxListedFindings)
    XCTAssertFalse(ids(try check(b).findings).contains("vhdx.more-findings"))
  }

  func testMoreAllocatedBlocksThanTrackedIsCheckIncomplete() throws {
    // 2^23 + 1 entries take several seconds in a debug build: opt in with IMGTOOL_SLOW_TESTS=1.
    try XCTSkipUnless(ProcessInfo.processInfo.environment["IMGTOOL_SLOW_TESTS"] == "1",
                      "walks 2^23 + 1 BAT entries; set IMGTOOL_SLOW_TESTS=1 to run it")
    // One payload block past Limits.maxTrackedBlocks: 1 MiB blocks and 4 KiB logical sectors
    // (a chunk ratio of 32768), so the BAT holds 2^23 + 1 payload entries plus 257 sector
    // bitmap entries (about 64 MiB). Every entry points at the same MiB (1 MiB, the log): the
    // BAT alone is the file, so each block is counted as an overlap, not written out.
    let payload = VHDXProbe.Limits.maxTrackedBlocks + 1
    var b = VHDXBuilder()
    b.logicalSectorSize = 4096
    b.virtualSize = UInt64(payload) << 20
    let ratio = 32768
    let entries = payload + (payload - 1) / ratio
    let batBytes = (entries * 8 + VHDXBuilder.mib - 1) / VHDXBuilder.mib * VHDXBuilder.mib
    b.regions[0].length = UInt32(batBytes)
    let entry = UInt64(1) << 20 | 6
    let table = [UInt64](repeating: entry.littleEndian, count: batBytes / 8).withUnsafeBytes { Array($0) }
    let image = Array(b.bytes.prefix(3 << 20)) + table
    let ctx = try context(image)
    let info = try XCTUnwrap(VHDXProbe.probe(ctx))
    XCTAssertEqual(info.formatSpecific.json["bat-entries"], .uint(UInt64(entries)))
    let r = VHDXProbe.deepCheck(ctx, info)
    let f = try XCTUnwrap(r.findings.first { $0.id == "vhdx.check-incomplete" }, "\(ids(r.findings))")
    XCTAssertEqual(f.severity, .warning)
    XCTAssertEqual(r.counts.json["check-errors"], .uint(1))
    XCTAssertEqual(r.counts.json["allocated-clusters"], .uint(UInt64(payload)))
  }

  func testBATNotKeptByAStreamIsNeedsSeekable() throws {
    // A stream keeping the first 3 MiB (headers, regions, log, metadata) and the last 64 KiB:
    // the BAT at 3 MiB is gone, so the check says it needs a file rather than guessing.
    var b = VHDXBuilder()
    b.blocks = 1
    b.bat = [VHDXBuilder.present(0)]
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("vhdx-stream-\(getpid()).vhdx").path
    defer { unlink(path) }
    XCTAssert(FileManager.default.createFile(atPath: path, contents: Data(b.bytes)))
    func streamCheck(head: Int) throws -> CheckReport {
      let fd = open(path, O_RDONLY)
      defer { close(fd) }
      let ctx = try ProbeContext(source: StreamSource(fd: fd, headLimit: head, tailLimit: 64 << 10))
      return VHDXProbe.deepCheck(ctx, try XCTUnwrap(VHDXProbe.probe(ctx)))
    }
    // The BAT kept in the head: nothing to report.
    XCTAssertEqual(try streamCheck(head: 4 << 20).findings, [])
    let r = try streamCheck(head: 3 << 20)
    XCTAssertEqual(ids(r.findings), ["vhdx.needs-seekable"])
    XCTAssertEqual(r.findings.first?.severity, .warning)
    XCTAssertEqual(r.counts.json["corruptions"], .uint(0))
    XCTAssertEqual(r.counts.json["check-errors"], .uint(1))
  }
}

/// Deterministic mutation smoke tests: single-byte changes in the structures neither probe
/// protects with a checksum must give an answer, a finding or an `ImageError`, never a trap.
final class VHDMutationTests: XCTestCase {
  struct LCG {
    var state: UInt64
    mutating func next() -> UInt64 {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return state >> 33
    }
  }

  func run(_ bytes: [UInt8], _ probe: any DeepCheckable.Type, ranges: [Range<Int>], iterations: Int) {
    var rng = LCG(state: 42)
    for _ in 0..<iterations {
      var b = bytes
      for _ in 0..<(1 + Int(rng.next() % 4)) {
        let r = ranges[Int(rng.next() % UInt64(ranges.count))]
        let i = r.lowerBound + Int(rng.next() % UInt64(r.count))
        b[i] = rng.next() % 3 == 0 ? 0xff : UInt8(truncatingIfNeeded: rng.next())
      }
      guard let ctx = try? ProbeContext(source: MemorySource(b)) else { continue }
      if let info = try? probe.probe(ctx) { _ = probe.deepCheck(ctx, info) }
    }
  }

  func testVHDMutations() {
    var img = VHDImageBuilder()
    img.header.blockSize = 4096
    img.header.maxTableEntries = 2048
    img.footer.currentSize = 8 << 20
    img.blocks = 3
    img.bat = [img.blockSector(0), img.blockSector(1), 0xFFFF_FFFF, img.blockSector(2)]
    let b = img.bytes
    // Footer fields, dynamic header fields, the BAT, the trailing footer.
    run(b, VHDProbe.self, ranges: [0..<90, 512..<1200, 1536..<1600, (b.count - 512)..<(b.count - 420)], iterations: 3000)
  }

  func testVHDXMutations() {
    var img = VHDXBuilder()
    img.blocks = 2
    img.bat = [VHDXBuilder.present(0), 2, VHDXBuilder.present(1)]
    img.fileFlags = 2
    img.parentLocator = [("relative_path", "a.vhdx")]
    let b = img.bytes
    let md = 2 << 20
    run(b, VHDXProbe.self, ranges: [md..<(md + 256), (md + 0x10000)..<(md + 0x10500), (md + 0x11000)..<(md + 0x11060),
                                    (3 << 20)..<((3 << 20) + 32)], iterations: 400)
  }

  func testVHDXRegionsFarBeyondTheFile() throws {
    var img = VHDXBuilder()
    img.regions[0].offset = 1 << 62
    img.regions[0].length = 0xFFF0_0000
    let ctx = try ProbeContext(source: MemorySource(img.bytes))
    let info = try XCTUnwrap(VHDXProbe.probe(ctx))
    XCTAssertTrue(info.findings.contains { $0.id == "vhdx.region-range" })
    XCTAssertEqual(VHDXProbe.deepCheck(ctx, info).findings, [])
  }
}

extension VHDXTests {
  func testUserItemDoesNotReplaceASystemItem() throws {
    var b = VHDXBuilder()
    var bogus = [UInt8](); bogus.le(UInt32(3 << 20)); bogus.le(UInt32(0))
    // A user item (flag bit 0) carrying the file parameters id and a bad block size.
    b.extraItems = [.init(guid: "caa16737-fa36-4d43-b3b6-33f0aa44e76b", offset: 0x12000, flags: 1, data: bogus)]
    let info = try XCTUnwrap(probe(b))
    XCTAssertEqual(info.clusterSize, 1 << 20)
    XCTAssertEqual(info.findings, [])
  }

  func testDuplicateSystemItem() throws {
    var b = VHDXBuilder()
    var sizes = [UInt8](); sizes.le(UInt64(8 << 20))
    b.extraItems = [.init(guid: "2fa54224-cd1b-4876-b211-5dbed83bf4b8", offset: 0x12000, data: sizes)]
    XCTAssertTrue(probeError(b)?.detail.contains("listed twice") ?? false)
  }
}
