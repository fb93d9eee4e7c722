import XCTest
@testable import FormatProbe

/// Builds small ISO 9660 / UDF images field by field, so each test changes one field.
struct ISOBuilder {
  static let sector = 2048

  /// Length of the image in 2048-byte sectors.
  var totalSectors = 48
  /// Bytes written at offset 0 (the system area: an MBR, another format's header).
  var systemArea: [UInt8] = []
  /// Whether a primary volume descriptor (type 1) is written at sector 16.
  var primary = true
  /// PVD 8: system identifier (a-characters, 32 bytes).
  var systemID = "LINUX"
  /// PVD 40: volume identifier (d-characters, 32 bytes).
  var volumeID = "TESTVOL"
  /// PVD 80: volume space size, little-endian half (nil: totalSectors).
  var spaceSizeLE: UInt32?
  /// PVD 84: volume space size, big-endian half (nil: same as the little-endian half).
  var spaceSizeBE: UInt32?
  /// PVD 128: logical block size, little-endian half.
  var blockSize: UInt16 = 2048
  /// PVD 130: logical block size, big-endian half (nil: same).
  var blockSizeBE: UInt16?
  /// PVD 190/318/446/574: volume set, publisher, preparer, application identifiers.
  var publisherID = "IMGTOOL TESTS"
  /// PVD 813: creation date, 16 digits + GMT offset byte.
  var creationDate = "2023111422132000"
  /// Boot record (type 0, "EL TORITO SPECIFICATION") pointing at this catalog sector.
  var bootCatalogSector: UInt32?
  /// Catalog bytes written at `bootCatalogSector` (when that sector is inside the image).
  var catalog: [UInt8] = []
  /// A Joliet supplementary descriptor (type 2, escape sequence %/E).
  var joliet = false
  /// Descriptors of an unknown type (CD001, type 100) after the others, before the terminator.
  var unknownDescriptors = 0
  /// The terminator (type 255) ending the set.
  var terminator = true
  /// UDF volume recognition sequence after the terminator: BEA01, this NSR, TEA01.
  var nsr: String?
  /// Writes a UDF anchor at sector 256 and a main volume descriptor sequence at sector 260.
  var udfAnchor = false
  /// UDF revision in the logical volume descriptor's domain identifier suffix (BCD).
  var udfRevision: UInt16 = 0x0201
  /// Directory extents: sector -> records (the root directory is at `rootSector`).
  var directories: [Int: [[UInt8]]] = [:]
  /// PVD 156 + 2: the root directory's extent.
  var rootSector: UInt32 = 40
  /// SVD 156 + 2: the Joliet root directory's extent (nil: the SVD carries only its escape sequence).
  var jolietRootSector: UInt32?
  /// PVD 156 + 10: the root directory's data length.
  var rootLength: UInt32 = 2048

  /// A directory record (ECMA-119 9.1): length, extent (both-endian), data length (both-endian),
  /// flags (0x02 directory), identifier.
  static func record(lba: UInt32, length: UInt32, directory: Bool = false, name: [UInt8],
                     lbaBE: UInt32? = nil) -> [UInt8] {
    var r = [UInt8](repeating: 0, count: 33 + name.count + (name.count % 2 == 0 ? 1 : 0))
    r[0] = UInt8(r.count)                                                                  // record length
    withUnsafeBytes(of: lba.littleEndian) { for i in 0..<4 { r[2 + i] = $0[i] } }          // extent LE
    withUnsafeBytes(of: (lbaBE ?? lba).bigEndian) { for i in 0..<4 { r[6 + i] = $0[i] } }  // extent BE
    withUnsafeBytes(of: length.littleEndian) { for i in 0..<4 { r[10 + i] = $0[i] } }      // data length LE
    withUnsafeBytes(of: length.bigEndian) { for i in 0..<4 { r[14 + i] = $0[i] } }         // data length BE
    r[25] = directory ? 0x02 : 0x00                                                        // file flags
    r[32] = UInt8(name.count)                                                              // identifier length
    for (i, c) in name.enumerated() { r[33 + i] = c }                                      // identifier
    return r
  }

  func build() -> [UInt8] {
    let s = ISOBuilder.sector
    var img = [UInt8](repeating: 0, count: totalSectors * s)
    func put(_ bytes: [UInt8], _ at: Int) {
      guard at < img.count else { return }
      for (i, b) in bytes.enumerated() where at + i < img.count { img[at + i] = b }
    }
    func text(_ t: String, _ at: Int, _ n: Int) { put(Array((t + String(repeating: " ", count: n)).utf8.prefix(n)), at) }
    func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    func be32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
    func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    func be16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
    func descriptor(_ type: UInt8, _ n: Int) -> Int {
      let at = n * s
      put([type] + Array("CD001".utf8) + [1], at)
      return at
    }
    put(systemArea, 0)
    var n = 16
    if primary {
      let at = descriptor(1, n)
      text(systemID, at + 8, 32)
      text(volumeID, at + 40, 32)
      let space = spaceSizeLE ?? UInt32(totalSectors)
      put(le32(space) + be32(spaceSizeBE ?? space), at + 80)
      put(le16(1) + be16(1), at + 120)  // volume set size
      put(le16(1) + be16(1), at + 124)  // volume sequence number
      put(le16(blockSize) + be16(blockSizeBE ?? blockSize), at + 128)
      put(le32(10) + be32(10), at + 132)  // path table size
      // Root directory record at 156: length 34, extent at sector 40, one sector long.
      put([34, 0] + le32(rootSector) + be32(rootSector) + le32(rootLength) + be32(rootLength), at + 156)
      put([2], at + 156 + 25)
      text(publisherID, at + 318, 128)
      put(Array(creationDate.utf8) + [0], at + 813)
      n += 1
    }
    if let cat = bootCatalogSector {
      let at = descriptor(0, n)
      put(Array("EL TORITO SPECIFICATION".utf8), at + 7)
      put(le32(cat), at + 71)
      put(catalog, Int(cat) * s)
      n += 1
    }
    if joliet {
      let at = descriptor(2, n)
      put([0x25, 0x2F, 0x45], at + 88)
      if let root = jolietRootSector {
        let space = spaceSizeLE ?? UInt32(totalSectors)
        put(le32(space) + be32(space), at + 80)
        put(le16(blockSize) + be16(blockSize), at + 128)
        put([34, 0] + le32(root) + be32(root) + le32(2048) + be32(2048), at + 156)
        put([2], at + 156 + 25)
      }
      n += 1
    }
    for _ in 0..<unknownDescriptors {
      _ = descriptor(100, n)
      n += 1
    }
    if terminator {
      _ = descriptor(255, n)
      n += 1
    }
    if let nsr {
      for id in ["BEA01", nsr, "TEA01"] {
        put([0] + Array(id.utf8) + [1], n * s)
        n += 1
      }
    }
    for (sector, records) in directories {
      var at = sector * s
      for r in records {
        put(r, at)
        at += r.count
      }
    }
    if udfAnchor {
      // Anchor volume descriptor pointer (tag 2) at 256 -> main sequence of 3 sectors at 260.
      put(udfTag(2, location: 256) + le32(3 * 2048) + le32(260), 256 * s)
      // Primary volume descriptor (tag 1): volume identifier dstring at 24.
      var pvd = udfTag(1, location: 260)
      pvd += [UInt8](repeating: 0, count: 8)
      var ident = [UInt8](repeating: 0, count: 32)
      ident[0] = 8
      for (i, c) in "UDFVOL".utf8.enumerated() { ident[1 + i] = c }
      ident[31] = 7
      put(pvd + ident, 260 * s)
      // Logical volume descriptor (tag 6): domain identifier at 216, revision at 216 + 24.
      put(udfTag(6, location: 261), 261 * s)
      put([0] + Array("*OSTA UDF Compliant".utf8), 261 * s + 216)
      put(le16(udfRevision), 261 * s + 216 + 24)
      put(udfTag(8, location: 262), 262 * s)
    }
    return img
  }

  /// ECMA-167 descriptor tag: identifier, version 2, checksum over bytes 0-3 and 5-15, location.
  func udfTag(_ id: UInt16, location: UInt32) -> [UInt8] {
    var t = [UInt8](repeating: 0, count: 16)
    t[0] = UInt8(id & 0xff); t[1] = UInt8(id >> 8)
    t[2] = 2
    withUnsafeBytes(of: location.littleEndian) { for i in 0..<4 { t[12 + i] = $0[i] } }
    var sum: UInt8 = 0
    for i in 0..<16 where i != 4 { sum &+= t[i] }
    t[4] = sum
    return t
  }
}

/// El Torito catalog entries, 32 bytes each.
enum ElTorito {
  /// Validation entry: header id 1, platform, id string, checksum making the words sum to 0, 55 AA.
  static func validation(platform: UInt8 = 0, id: String = "IMGTOOL", goodChecksum: Bool = true, key: [UInt8] = [0x55, 0xAA]) -> [UInt8] {
    var e = [UInt8](repeating: 0, count: 32)
    e[0] = 1                                                   // header id
    e[1] = platform                                            // platform id
    for (i, c) in id.utf8.prefix(24).enumerated() { e[4 + i] = c }  // id string
    e[30] = key[0]; e[31] = key[1]                             // key bytes
    var sum: UInt16 = 0
    for i in 0..<16 { sum &+= UInt16(e[2 * i]) | UInt16(e[2 * i + 1]) << 8 }
    let check = goodChecksum ? (0 &- sum) : (0 &- sum) &+ 1   // checksum word at 28
    e[28] = UInt8(check & 0xff); e[29] = UInt8(check >> 8)
    return e
  }

  /// Initial/default or section entry.
  static func entry(bootable: Bool = true, media: UInt8 = 0, segment: UInt16 = 0, sectors: UInt16 = 4, rba: UInt32) -> [UInt8] {
    var e = [UInt8](repeating: 0, count: 32)
    e[0] = bootable ? 0x88 : 0x00                                // boot indicator
    e[1] = media                                                 // boot media type
    e[2] = UInt8(segment & 0xff); e[3] = UInt8(segment >> 8)     // load segment
    e[6] = UInt8(sectors & 0xff); e[7] = UInt8(sectors >> 8)     // sector count
    withUnsafeBytes(of: rba.littleEndian) { for i in 0..<4 { e[8 + i] = $0[i] } }  // load RBA
    return e
  }

  /// Section header: 0x90 (more follow) or 0x91 (final), platform, entry count.
  static func section(final: Bool, platform: UInt8, count: UInt16) -> [UInt8] {
    var e = [UInt8](repeating: 0, count: 32)
    e[0] = final ? 0x91 : 0x90
    e[1] = platform
    e[2] = UInt8(count & 0xff); e[3] = UInt8(count >> 8)
    return e
  }
}

func probeISO(_ bytes: [UInt8]) throws -> ImageInfo? {
  try ISOProbe.probe(try ProbeContext(source: MemorySource(bytes)))
}


final class ISOTests: XCTestCase {
  func testPlainPrimaryVolumeDescriptor() throws {
    let info = try XCTUnwrap(try probeISO(ISOBuilder().build()))
    XCTAssertEqual(info.qemuFormat, "raw")
    XCTAssertEqual(info.diskFormat, .iso)
    XCTAssertEqual(info.subformat, "iso9660")
    XCTAssertEqual(info.virtualSize, 48 * 2048)
    let fs = info.formatSpecific.json
    XCTAssertEqual(fs["volume-id"], .string("TESTVOL"))
    XCTAssertEqual(fs["system-id"], .string("LINUX"))
    XCTAssertEqual(fs["publisher-id"], .string("IMGTOOL TESTS"))
    XCTAssertEqual(fs["creation-date"], .string("2023-11-14T22:13:20.00+00:00"))
    XCTAssertEqual(fs["volume-size"], .uint(48 * 2048))
    XCTAssertEqual(fs["joliet"], .bool(false))
    XCTAssertEqual(info.findings, [])
  }

  func testNotAnISO() throws {
    XCTAssertNil(try probeISO([UInt8](repeating: 0, count: 40000)))
    XCTAssertNil(try probeISO([]))
  }

  func testJoliet() throws {
    var b = ISOBuilder()
    b.joliet = true
    let info = try XCTUnwrap(try probeISO(b.build()))
    XCTAssertEqual(info.formatSpecific.json["joliet-level"], .int(3))
  }

  func testVolumeSizeBothEndianMismatch() throws {
    var b = ISOBuilder()
    b.spaceSizeBE = 4096
    XCTAssertEqual(ids(try probeISO(b.build())), ["iso.volume-size-mismatch"])
  }

  func testBlockSizeBothEndianMismatch() throws {
    var b = ISOBuilder()
    b.blockSizeBE = 512
    XCTAssertEqual(ids(try probeISO(b.build())), ["iso.both-endian-mismatch"])
  }

  func testInvalidBlockSize() throws {
    var b = ISOBuilder()
    b.blockSize = 3000
    b.blockSizeBE = 3000
    XCTAssertEqual(ids(try probeISO(b.build())), ["iso.block-size"])
  }

  func testTruncatedVolume() throws {
    var b = ISOBuilder()
    b.spaceSizeLE = 1000
    let info = try probeISO(b.build())
    XCTAssertEqual(ids(info), ["iso.truncated"])
    XCTAssertEqual(info?.findings.first?.severity, .corrupt)
    // The virtual size stays the file size, as qemu's raw driver sees it.
    XCTAssertEqual(info?.virtualSize, 48 * 2048)
  }

  func testTrailingBytesAreANoteNotAFinding() throws {
    var b = ISOBuilder()
    b.spaceSizeLE = 40
    let info = try XCTUnwrap(try probeISO(b.build()))
    XCTAssertEqual(info.findings, [])
    XCTAssertEqual(info.formatSpecific.json["trailing-bytes"], .uint(8 * 2048))
  }

  func testTruncatedInsideDescriptors() throws {
    // Only the first bytes of the primary descriptor: a clear finding, no crash.
    let img = Array(ISOBuilder().build().prefix(16 * 2048 + 100))
    let info = try probeISO(img)
    XCTAssertEqual(ids(info), ["iso.truncated"])
    for n in [32769, 32774, 33000, 34816] {
      _ = try? probeISO(Array(ISOBuilder().build().prefix(n)))
    }
  }

  func testFileEndingRightAfterTheTerminator() throws {
    var b = ISOBuilder()
    b.totalSectors = 18
    XCTAssertEqual(ids(try probeISO(b.build())), [])
  }

  func testMissingPrimaryThrows() throws {
    var b = ISOBuilder()
    b.primary = false
    XCTAssertThrowsError(try probeISO(b.build())) { error in
      XCTAssertEqual((error as? ImageError)?.finding, "iso.no-primary")
    }
  }

  func testMissingTerminator() throws {
    var b = ISOBuilder()
    b.terminator = false
    XCTAssertEqual(ids(try probeISO(b.build())), ["iso.descriptor-terminator"])
  }

  func testDescriptorLimit() throws {
    var b = ISOBuilder()
    b.totalSectors = 120
    b.unknownDescriptors = 80
    b.terminator = false
    XCTAssertEqual(ids(try probeISO(b.build())), ["iso.descriptor-limit"])
  }

  func bootISO(_ catalog: [UInt8], sector: UInt32 = 30) -> ISOBuilder {
    var b = ISOBuilder()
    b.bootCatalogSector = sector
    b.catalog = catalog
    return b
  }

  func testElToritoCatalog() throws {
    let cat = ElTorito.validation() + ElTorito.entry(rba: 31)
      + ElTorito.section(final: true, platform: 0xEF, count: 1) + ElTorito.entry(sectors: 8, rba: 32)
    let info = try XCTUnwrap(try probeISO(bootISO(cat).build()))
    XCTAssertEqual(info.findings, [])
    let et = try XCTUnwrap(info.formatSpecific.json["el-torito"])
    XCTAssertEqual(et["catalog-lba"], .uint(30))
    XCTAssertEqual(et["platform"], .string("x86"))
    XCTAssertEqual(et["id"], .string("IMGTOOL"))
    XCTAssertEqual(et.at("entries.0.load-segment"), .string("0x7c0"))
    XCTAssertEqual(et.at("entries.0.bootable"), .bool(true))
    XCTAssertEqual(et.at("entries.1.platform"), .string("efi"))
    XCTAssertEqual(et.at("entries.1.sector-count"), .uint(8))
  }

  func testBootCatalogChecksum() throws {
    let cat = ElTorito.validation(goodChecksum: false) + ElTorito.entry(rba: 31)
    XCTAssertEqual(ids(try probeISO(bootISO(cat).build())), ["iso.boot-catalog-checksum"])
  }

  func testBootCatalogKeyBytes() throws {
    let cat = ElTorito.validation(key: [0x55, 0x55]) + ElTorito.entry(rba: 31)
    XCTAssertEqual(ids(try probeISO(bootISO(cat).build())), ["iso.boot-catalog-invalid"])
  }

  func testBootCatalogBeyondEnd() throws {
    XCTAssertEqual(ids(try probeISO(bootISO([], sector: 5000).build())), ["iso.boot-catalog-range"])
  }

  func testBootImageBeyondEnd() throws {
    let cat = ElTorito.validation() + ElTorito.entry(rba: 900)
    XCTAssertEqual(ids(try probeISO(bootISO(cat).build())), ["iso.boot-image-range"])
    // A floppy-emulation image is 1.44 MB whatever the sector count says.
    let floppy = ElTorito.validation() + ElTorito.entry(media: 2, sectors: 1, rba: 31)
    XCTAssertEqual(ids(try probeISO(bootISO(floppy).build())), ["iso.boot-image-range"])
  }

  func testBootCatalogSectionCountBeyondCatalog() throws {
    // A section header declaring 65535 entries: bounded by the bytes read, one finding.
    let cat = ElTorito.validation() + ElTorito.entry(rba: 31) + ElTorito.section(final: true, platform: 0, count: 0xFFFF)
    var b = bootISO(cat)
    b.totalSectors = 31
    let info = try XCTUnwrap(try probeISO(b.build()))
    XCTAssertTrue(ids(info).contains("iso.boot-catalog-limit"), "\(ids(info))")
  }

  func testStreamThatLostTheBootCatalog() throws {
    var b = ISOBuilder()
    b.totalSectors = 300
    b.bootCatalogSector = 200
    b.catalog = ElTorito.validation() + ElTorito.entry(rba: 201)
    let img = b.build()
    let kept = MemorySource(Array(img.prefix(50 * 2048)), declaredSize: UInt64(img.count))
    let info = try XCTUnwrap(try ISOProbe.probe(try ProbeContext(source: kept)))
    XCTAssertEqual(ids(info), ["iso.needs-seekable"])
  }

  func testUDFBridge() throws {
    var b = ISOBuilder()
    b.totalSectors = 300
    b.nsr = "NSR03"
    b.udfAnchor = true
    let info = try XCTUnwrap(try probeISO(b.build()))
    XCTAssertEqual(info.subformat, "iso9660+udf")
    let udf = try XCTUnwrap(info.formatSpecific.json["udf"])
    XCTAssertEqual(udf["nsr"], .string("NSR03"))
    XCTAssertEqual(udf["revision"], .string("2.01"))
    XCTAssertEqual(udf["volume-id"], .string("UDFVOL"))
    XCTAssertEqual(info.findings, [])
  }

  func testUDFOnly() throws {
    var b = ISOBuilder()
    b.totalSectors = 300
    b.primary = false
    b.terminator = false
    b.nsr = "NSR02"
    b.udfAnchor = true
    b.udfRevision = 0x0150
    let info = try XCTUnwrap(try probeISO(b.build()))
    XCTAssertEqual(info.diskFormat, .iso)
    XCTAssertEqual(info.subformat, "udf")
    XCTAssertEqual(info.formatSpecific.json.at("udf.revision"), .string("1.50"))
    XCTAssertEqual(info.findings, [])
  }

  func testUDFAnchorMissing() throws {
    var b = ISOBuilder()
    b.totalSectors = 300
    b.nsr = "NSR03"
    XCTAssertEqual(ids(try probeISO(b.build())), ["iso.udf-anchor"])
    b.totalSectors = 100
    XCTAssertEqual(ids(try probeISO(b.build())), ["iso.udf-anchor"])
  }

  func testEmbeddedFormatMagic() throws {
    for (magic, at) in [([UInt8](arrayLiteral: 0x51, 0x46, 0x49, 0xFB), 0), (Array("KDMV".utf8), 0),
                        (Array("vhdxfile".utf8), 0), ([0x7F, 0x10, 0xDA, 0xBE], 0x40),
                        ([0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE], 0), (Array("QED".utf8) + [0], 0)] {
      var b = ISOBuilder()
      b.systemArea = [UInt8](repeating: 0, count: at) + magic
      let info = try XCTUnwrap(try probeISO(b.build()))
      XCTAssertEqual(ids(info), ["iso.embedded-format"], "\(magic)")
      XCTAssertEqual(info.findings.first?.severity, .unsafe)
    }
    // An MBR in the system area is a hybrid ISO, not a foreign format.
    var b = ISOBuilder()
    b.systemArea = [UInt8](repeating: 0, count: 510) + [0x55, 0xAA]
    XCTAssertEqual(ids(try probeISO(b.build())), [])
  }

  func testDates() {
    XCTAssertNil(ISOProbe.date(ArraySlice(Array("0000000000000000".utf8) + [0])))
    XCTAssertEqual(ISOProbe.date(ArraySlice(Array("2020010203040506".utf8) + [0xF8])), "2020-01-02T03:04:05.06-02:00")
    XCTAssertNil(ISOProbe.date(ArraySlice(Array("20200102030405xx".utf8) + [0])))
    XCTAssertNil(ISOProbe.date([]))
  }
}

final class ISOCheckTests: XCTestCase {
  func check(_ b: ISOBuilder) throws -> CheckReport {
    let ctx = try ProbeContext(source: MemorySource(b.build()))
    let info = try XCTUnwrap(try ISOProbe.probe(ctx))
    return ISOProbe.deepCheck(ctx, info)
  }

  /// Root at 40 with "." and "..", a file at 44 and a directory at 45 holding one file.
  func tree() -> ISOBuilder {
    var b = ISOBuilder()
    b.totalSectors = 60
    b.directories[40] = [ISOBuilder.record(lba: 40, length: 2048, directory: true, name: [0]),
                         ISOBuilder.record(lba: 40, length: 2048, directory: true, name: [1]),
                         ISOBuilder.record(lba: 44, length: 100, name: Array("README.TXT;1".utf8)),
                         ISOBuilder.record(lba: 45, length: 2048, directory: true, name: Array("DOCS".utf8))]
    b.directories[45] = [ISOBuilder.record(lba: 45, length: 2048, directory: true, name: [0]),
                         ISOBuilder.record(lba: 40, length: 2048, directory: true, name: [1]),
                         ISOBuilder.record(lba: 46, length: 5000, name: Array("A.TXT;1".utf8))]
    return b
  }

  func testValidTree() throws {
    let r = try check(tree())
    XCTAssertEqual(r.findings, [])
    XCTAssertEqual(r.counts.json["directories"], .int(2))
    XCTAssertEqual(r.counts.json["files"], .int(2))
  }

  func testExtentBeyondVolume() throws {
    var b = tree()
    b.directories[45]?[2] = ISOBuilder.record(lba: 46, length: 500_000, name: Array("A.TXT;1".utf8))
    let r = try check(b)
    XCTAssertEqual(r.findings.map(\.id), ["iso.extent-range"])
    XCTAssertEqual(r.counts.json["corruptions"], .int(1))
    XCTAssertTrue(r.findings[0].message.contains("/DOCS/A.TXT;1"), r.findings[0].message)
  }

  func testDirectoryLoop() throws {
    var b = tree()
    // DOCS contains a directory pointing back at the root.
    b.directories[45]?.append(ISOBuilder.record(lba: 40, length: 2048, directory: true, name: Array("UP".utf8)))
    XCTAssertEqual(try check(b).findings.map(\.id), ["iso.directory-loop"])
  }

  func testBadRecord() throws {
    var b = tree()
    var bad = ISOBuilder.record(lba: 44, length: 1, name: Array("X".utf8))
    bad[32] = 200  // identifier longer than the record
    b.directories[45]?.append(bad)
    XCTAssertEqual(try check(b).findings.map(\.id), ["iso.directory-record"])
  }

  func testRecordBothEndianMismatch() throws {
    var b = tree()
    b.directories[45]?[2] = ISOBuilder.record(lba: 46, length: 10, name: Array("A.TXT;1".utf8), lbaBE: 47)
    XCTAssertEqual(try check(b).findings.map(\.id), ["iso.both-endian-mismatch"])
  }

  func testRootBeyondEnd() throws {
    var b = tree()
    b.rootLength = 0x7FFF_0000
    XCTAssertEqual(try check(b).findings.map(\.id), ["iso.extent-range"])
  }

  func testWideDirectoryIsBoundedAndLinear() throws {
    // 40 sectors of records all naming the same subdirectory: one walk, one loop finding each
    // after the first, capped in the listing.
    var b = ISOBuilder()
    b.totalSectors = 100
    b.rootLength = 40 * 2048
    var recs: [[UInt8]] = []
    for _ in 0..<(40 * 2048 / 38) { recs.append(ISOBuilder.record(lba: 90, length: 2048, directory: true, name: Array("D".utf8))) }
    // Records must not cross sectors: 53 records of 38 bytes per sector.
    for sector in 0..<40 { b.directories[40 + sector] = Array(recs[(sector * 53)..<(sector * 53 + 53)]) }
    let r = try check(b)
    XCTAssertEqual(r.findings.count, ISOProbe.CheckLimits.maxFindingsPerKind + 1)
    XCTAssertEqual(Set(r.findings.map(\.id)), ["iso.directory-loop"])
  }

  func testJolietTreeListingOtherFiles() throws {
    var b = tree()
    b.joliet = true
    b.jolietRootSector = 50
    let name: [UInt8] = [0, 0x41, 0, 0x2E, 0, 0x54]  // "A.T" in UTF-16BE
    b.directories[50] = [ISOBuilder.record(lba: 50, length: 2048, directory: true, name: [0]),
                         ISOBuilder.record(lba: 50, length: 2048, directory: true, name: [1]),
                         ISOBuilder.record(lba: 44, length: 100, name: name),
                         ISOBuilder.record(lba: 52, length: 10, name: name)]
    let r = try check(b)
    XCTAssertEqual(r.findings.map(\.id), ["iso.tree-mismatch"])
    XCTAssertEqual(r.findings.first?.severity, .info)
    // The same files in both trees: nothing to report.
    b.directories[50] = [ISOBuilder.record(lba: 50, length: 2048, directory: true, name: [0]),
                         ISOBuilder.record(lba: 50, length: 2048, directory: true, name: [1]),
                         ISOBuilder.record(lba: 44, length: 100, name: name),
                         ISOBuilder.record(lba: 45, length: 2048, directory: true, name: name)]
    XCTAssertEqual(try check(b).findings.map(\.id), [])
  }

  func testDirectoryLargerThanTheLimit() throws {
    var b = tree()
    b.rootLength = UInt32(ISOProbe.CheckLimits.maxDirectoryBytes) + 2048
    b.totalSectors = Int(b.rootLength) / 2048 + 64
    let r = try check(b)
    XCTAssertEqual(r.findings.map(\.id), ["iso.directory-limit"])
    XCTAssertEqual(r.findings.first?.severity, .warning)
  }

  func testTotalDirectoryBytesAreBounded() throws {
    // 40 records naming distinct "directories" of 16 MiB each over the same zero-filled area:
    // 640 MiB of reads unless the total is capped.
    var b = ISOBuilder()
    b.totalSectors = Int(ISOProbe.CheckLimits.maxDirectoryBytes / 2048) + 100
    var recs: [[UInt8]] = []
    for i in 0..<40 {
      recs.append(ISOBuilder.record(lba: UInt32(50 + i), length: UInt32(ISOProbe.CheckLimits.maxDirectoryBytes), directory: true,
                                    name: Array("D\(i)".utf8)))
    }
    b.directories[40] = Array(recs.prefix(40))
    let r = try check(b)
    XCTAssertEqual(r.findings.map(\.id), ["iso.directory-limit"])
    XCTAssertLessThanOrEqual(r.counts.json["directories"]?.uint ?? 0, 18)
  }

  func testRealISOsCheckClean() throws {
    for file in ["plain.iso", "rr-joliet.iso", "genisoimage.iso", "eltorito-bios.iso", "hybrid-gpt.iso",
                 "isohybrid.iso", "udf-bridge.iso", "appended-esp.iso"] {
      let path = try Fixtures.path("disc", file)
      guard FileManager.default.fileExists(atPath: path) else { continue }
      let ctx = try ProbeContext(source: try FileSource(path: path))
      let info = try XCTUnwrap(try ISOProbe.probe(ctx), file)
      let r = ISOProbe.deepCheck(ctx, info)
      XCTAssertEqual(r.findings, [], file)
      XCTAssertGreaterThanOrEqual(r.counts.json["directories"]?.uint ?? 0, 1, file)
      XCTAssertGreaterThanOrEqual(r.counts.json["files"]?.uint ?? 0, 1, file)
    }
  }
}
