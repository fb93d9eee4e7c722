import XCTest
@testable import FormatProbe

/// Builds small qcow2 images field by field, so a test can change one field and see one error.
/// The default is a valid, empty 1 MiB version 3 image with 512-byte clusters:
/// cluster 0 header, 1 refcount table, 2 refcount block, 3 L1 table.
struct QCOW2Builder {
  var magic: [UInt8] = [0x51, 0x46, 0x49, 0xfb]  // "QFI\xfb"
  var version: UInt32 = 3                          // 2 or 3
  var backingFileOffset: UInt64 = 0                // 0: no backing file
  var backingFileSize: UInt32 = 0
  var clusterBits: UInt32 = 9                      // 512-byte clusters keep images tiny
  var size: UInt64 = 1 << 20                       // virtual size
  var cryptMethod: UInt32 = 0                      // 0 none, 1 AES, 2 LUKS
  var l1Size: UInt32 = 32                          // 1 MiB needs 32 entries at 512-byte clusters (64 x 512 bytes each)
  var l1TableOffset: UInt64 = 3 * 512
  var refcountTableOffset: UInt64 = 1 * 512
  var refcountTableClusters: UInt32 = 1
  var nbSnapshots: UInt32 = 0
  var snapshotsOffset: UInt64 = 0
  var incompatibleFeatures: UInt64 = 0             // v3: dirty, corrupt, data file, compression, extended L2
  var compatibleFeatures: UInt64 = 0               // v3: lazy refcounts
  var autoclearFeatures: UInt64 = 0                // v3: bitmaps, raw data
  var refcountOrder: UInt32 = 4                    // 16-bit refcounts
  var headerLength: UInt32 = 112                   // v3: includes compression_type and padding
  var compressionType: UInt8 = 0                   // 0 zlib, 1 zstd
  /// Header extensions (type, data), written after the header, then an end marker.
  var extensions: [(UInt32, [UInt8])] = []
  var backingFile: [UInt8] = []
  /// Clusters after the header cluster; index 0 is cluster 1.
  var clusters: [[UInt8]] = []
  /// Refcount block contents (cluster 2), by cluster index, 16-bit.
  var refcounts: [UInt64: UInt64] = [0: 1, 1: 1, 2: 1, 3: 1]
  var writeEndMarker = true
  /// Extra bytes appended as additional clusters (data, L2 tables) starting at cluster 4.
  var tail: [[UInt8]] = []

  var clusterSize: Int { 1 << Int(clusterBits) }

  static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
  static func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (24 - 8 * UInt32($0))) & 0xff) } }
  static func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (56 - 8 * UInt64($0))) & 0xff) } }

  func header() -> [UInt8] {
    var h = magic
    h += Self.be32(version)
    h += Self.be64(backingFileOffset)
    h += Self.be32(backingFileSize)
    h += Self.be32(clusterBits)
    h += Self.be64(size)
    h += Self.be32(cryptMethod)
    h += Self.be32(l1Size)
    h += Self.be64(l1TableOffset)
    h += Self.be64(refcountTableOffset)
    h += Self.be32(refcountTableClusters)
    h += Self.be32(nbSnapshots)
    h += Self.be64(snapshotsOffset)
    if version >= 3 {
      h += Self.be64(incompatibleFeatures)
      h += Self.be64(compatibleFeatures)
      h += Self.be64(autoclearFeatures)
      h += Self.be32(refcountOrder)
      h += Self.be32(headerLength)
      if headerLength > 104 {
        h.append(compressionType)
        h += [UInt8](repeating: 0, count: Int(headerLength) - 105)
      }
    }
    for (type, data) in extensions {
      h += Self.be32(type)
      h += Self.be32(UInt32(data.count))
      h += data
      h += [UInt8](repeating: 0, count: (8 - data.count % 8) % 8)
    }
    if writeEndMarker { h += [UInt8](repeating: 0, count: 8) }
    return h
  }

  /// The whole image: header cluster, refcount table, refcount block, L1 table, then `tail`.
  func build() -> [UInt8] {
    let cs = clusterSize
    var out = header()
    if backingFileOffset != 0, !backingFile.isEmpty, Int(backingFileOffset) + backingFile.count <= max(cs, out.count + backingFile.count + 1024) {
      if out.count < Int(backingFileOffset) { out += [UInt8](repeating: 0, count: Int(backingFileOffset) - out.count) }
      out.replaceSubrange(Int(backingFileOffset)..<min(out.count, Int(backingFileOffset) + backingFile.count),
                          with: backingFile)
    }
    if out.count < cs { out += [UInt8](repeating: 0, count: cs - out.count) }
    // Cluster 1: refcount table pointing at cluster 2.
    var rt = Self.be64(2 * UInt64(cs))
    rt += [UInt8](repeating: 0, count: cs - 8)
    // Cluster 2: refcount block.
    var rb = [UInt8](repeating: 0, count: cs)
    let width = 1 << Int(refcountOrder)
    for (cluster, value) in refcounts {
      let bit = Int(cluster) * width
      if width >= 8 {
        let bytes = width / 8
        for i in 0..<bytes where bit / 8 + i < cs {
          rb[bit / 8 + i] = UInt8((value >> UInt64(8 * (bytes - 1 - i))) & 0xff)
        }
      } else if bit / 8 < cs {
        // Sub-byte refcounts are stored least significant bits first within a byte.
        rb[bit / 8] |= UInt8((value & ((1 << UInt64(width)) - 1)) << UInt64(bit % 8))
      }
    }
    // Cluster 3: L1 table (entries set by the caller through `l1`).
    var l1 = [UInt8](repeating: 0, count: cs)
    for (i, e) in l1Entries.enumerated() where i * 8 + 8 <= cs { l1.replaceSubrange(i * 8..<(i * 8 + 8), with: Self.be64(e)) }
    out += rt + rb + l1
    for c in tail { out += c + [UInt8](repeating: 0, count: max(0, cs - c.count)) }
    return out
  }

  var l1Entries: [UInt64] = []

  /// A cluster of big-endian 64-bit entries (an L2 table).
  func table(_ entries: [UInt64]) -> [UInt8] {
    var c = [UInt8]()
    for e in entries { c += Self.be64(e) }
    return c
  }

  func source() -> MemorySource { MemorySource(build(), name: "built.qcow2") }
}

/// Builders for the other formats of the family, one field per line.
enum QCOWFamilyBuilders {
  static func be16(_ v: UInt16) -> [UInt8] { QCOW2Builder.be16(v) }
  static func be32(_ v: UInt32) -> [UInt8] { QCOW2Builder.be32(v) }
  static func be64(_ v: UInt64) -> [UInt8] { QCOW2Builder.be64(v) }
  static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xff) } }
  static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xff) } }
  static func text(_ s: String, _ n: Int) -> [UInt8] { Array(Array(s.utf8).prefix(n)) + [UInt8](repeating: 0, count: max(0, n - s.utf8.count)) }

  /// Legacy QCOW v1 header followed by an L1 table.
  static func qcow(size: UInt64 = 1 << 20, clusterBits: UInt8 = 12, l2Bits: UInt8 = 9, crypt: UInt32 = 0,
                   backing: String? = nil, backingSize: UInt32? = nil) -> [UInt8] {
    let name = backing.map { Array($0.utf8) } ?? []
    var h: [UInt8] = [0x51, 0x46, 0x49, 0xfb]        // magic
    h += be32(1)                                      // version
    h += be64(name.isEmpty ? 0 : 48)                  // backing_file_offset
    h += be32(backingSize ?? UInt32(name.count))      // backing_file_size
    h += be32(0)                                      // mtime
    h += be64(size)                                   // size
    h += [clusterBits, l2Bits, 0, 0]                  // cluster_bits, l2_bits, padding
    h += be32(crypt)                                  // crypt_method
    h += be64(512)                                    // l1_table_offset
    h += name
    h += [UInt8](repeating: 0, count: 1024 - h.count)
    return h
  }

  /// QED header with its L1 table at cluster 1.
  static func qed(clusterSize: UInt32 = 4096, tableSize: UInt32 = 1, headerSize: UInt32 = 1, features: UInt64 = 0,
                  imageSize: UInt64 = 1 << 20, backing: String? = nil, backingOffset: UInt32 = 64) -> [UInt8] {
    let name = backing.map { Array($0.utf8) } ?? []
    var h: [UInt8] = [0x51, 0x45, 0x44, 0x00]        // magic "QED\0"
    h += le32(clusterSize)                            // cluster_size
    h += le32(tableSize)                              // table_size (clusters)
    h += le32(headerSize)                             // header_size (clusters)
    h += le64(features | (name.isEmpty ? 0 : 1))      // features (bit 0: backing file)
    h += le64(0)                                      // compat_features
    h += le64(0)                                      // autoclear_features
    h += le64(UInt64(headerSize) * UInt64(clusterSize)) // l1_table_offset
    h += le64(imageSize)                              // image_size
    h += le32(name.isEmpty ? 0 : backingOffset)       // backing_filename_offset
    h += le32(UInt32(name.count))                     // backing_filename_size
    h += name
    let total = Int(headerSize + tableSize) * Int(clusterSize)
    h += [UInt8](repeating: 0, count: max(0, min(total, 1 << 20) - h.count))
    return h
  }

  /// LUKS1 header (592 bytes) padded to the payload offset plus one sector of payload.
  static func luks1(payloadSectors: UInt32 = 8, active: UInt32 = 0x00ac71f3, keyBytes: UInt32 = 64,
                    mode: String = "xts-plain64", fileSize: Int? = nil) -> [UInt8] {
    var h: [UInt8] = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]  // magic
    h += be16(1)                                      // version
    h += text("aes", 32)                              // cipher_name
    h += text(mode, 32)                               // cipher_mode
    h += text("sha256", 32)                           // hash_spec
    h += be32(payloadSectors)                         // payload_offset
    h += be32(keyBytes)                               // key_bytes
    h += [UInt8](repeating: 0xaa, count: 20)          // mk_digest
    h += [UInt8](repeating: 0xbb, count: 32)          // mk_digest_salt
    h += be32(1000)                                   // mk_digest_iter
    h += text("0a1b2c3d-0000-4000-8000-000000000001", 40) // uuid
    for i in 0..<8 {                                  // key slots
      h += be32(i == 0 ? active : 0x0000dead)         //   active
      h += be32(i == 0 ? 2000 : 0)                    //   iterations
      h += [UInt8](repeating: 0, count: 32)           //   salt
      h += be32(8 + UInt32(i) * 512)                  //   key_material_offset
      h += be32(4000)                                 //   stripes
    }
    let size = fileSize ?? (Int(payloadSectors) * 512 + 512)
    h += [UInt8](repeating: 0, count: max(0, size - h.count))
    return h
  }

  /// LUKS2: 4096-byte binary header, JSON area, padded to hdr_size, then payload.
  static func luks2(json: String, hdrSize: UInt64 = 16384, fileSize: Int = 2 << 20) -> [UInt8] {
    var h: [UInt8] = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]  // magic
    h += be16(2)                                      // version
    h += be64(hdrSize)                                // hdr_size
    h += be64(1)                                      // seqid
    h += text("label", 48)                            // label
    h += text("sha256", 32)                           // checksum_alg
    h += [UInt8](repeating: 0, count: 64)             // salt
    h += text("0a1b2c3d-0000-4000-8000-000000000002", 40) // uuid
    h += text("", 48)                                 // subsystem
    h += be64(0)                                      // hdr_offset
    h += [UInt8](repeating: 0, count: 184)            // padding
    h += [UInt8](repeating: 0, count: 64)             // csum
    h += [UInt8](repeating: 0, count: 4096 - h.count) // padding
    h += Array(json.utf8)                             // JSON metadata
    h += [UInt8](repeating: 0, count: max(0, fileSize - h.count))
    return h
  }

  static let luks2JSON = """
    {"keyslots":{"0":{"type":"luks2","key_size":64,"area":{"type":"raw","offset":"32768","size":"258048","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"pbkdf2","hash":"sha256","iterations":1000,"salt":"AA=="},"af":{"type":"luks1","stripes":4000,"hash":"sha256"}}},
     "tokens":{},
     "segments":{"0":{"type":"crypt","offset":"1048576","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}},
     "digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"AA==","digest":"AA=="}},
     "config":{"json_size":"12288","keyslots_size":"1015808"}}
    """
}

func probeBytes<P: FormatProbe>(_ p: P.Type, _ bytes: [UInt8]) throws(ImageError) -> ImageInfo? {
  let ctx = try ProbeContext(source: MemorySource(bytes, name: "test"))
  return try P.probe(ctx)
}

/// Asserts that probing throws an ImageError, and returns it.
@discardableResult
func assertProbeError<P: FormatProbe>(_ p: P.Type, _ bytes: [UInt8], kind: ImageError.Kind? = nil, field: String? = nil,
                                      finding: String? = nil, file: StaticString = #filePath, line: UInt = #line) -> ImageError? {
  do {
    let info = try probeBytes(p, bytes)
    XCTFail("expected an error, got \(String(describing: info?.probe))", file: file, line: line)
    return nil
  } catch {
    if let kind { XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line) }
    if let field { XCTAssertTrue(error.field.contains(field), "field: \(error)", file: file, line: line) }
    if let finding { XCTAssertEqual(error.finding, finding, "\(error)", file: file, line: line) }
    XCTAssertTrue(error.description.hasPrefix("\(error.format): "), file: file, line: line)
    return error
  }
}

func ids(_ info: ImageInfo?) -> [String] { info?.findings.map(\.id) ?? [] }

final class QCOWTests: XCTestCase {
  // MARK: qcow2 header

  func testValidV3() throws {
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, QCOW2Builder().build()))
    XCTAssertEqual(info.qemuFormat, "qcow2")
    XCTAssertEqual(info.diskFormat, .qcow2)
    XCTAssertEqual(info.subformat, "v3")
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(info.clusterSize, 512)
    XCTAssertEqual(info.dirty, false)
    XCTAssertEqual(info.encrypted, false)
    XCTAssertEqual(info.formatSpecific.json["compat"], .string("1.1"))
    XCTAssertEqual(info.formatSpecific.json["refcount-bits"], .uint(16))
    XCTAssertEqual(info.findings, [])
  }

  func testValidV2() throws {
    var b = QCOW2Builder()
    b.version = 2
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(info.subformat, "v2")
    XCTAssertEqual(info.formatSpecific.json["compat"], .string("0.10"))
    XCTAssertNil(info.formatSpecific.json["lazy-refcounts"])
    XCTAssertNil(info.formatSpecific.json["corrupt"])
  }

  func testNotQcow2() throws {
    XCTAssertNil(try probeBytes(QCOW2Probe.self, [UInt8](repeating: 0, count: 4096)))
    XCTAssertNil(try probeBytes(QCOW2Probe.self, [0x51, 0x46]))
    var b = QCOW2Builder()
    b.version = 1
    XCTAssertNil(try probeBytes(QCOW2Probe.self, b.build()), "version 1 is legacy qcow")
  }

  func testTruncatedHeaders() {
    let full = QCOW2Builder().build()
    for n in [8, 40, 71, 80, 100] {
      assertProbeError(QCOW2Probe.self, Array(full.prefix(n)), kind: .truncated)
    }
  }

  func testVersionUnsupported() {
    var b = QCOW2Builder()
    b.version = 4
    assertProbeError(QCOW2Probe.self, b.build(), kind: .unsupported, field: "version")
  }

  func testClusterBitsOutOfRange() {
    for bits: UInt32 in [0, 8, 22, 63, 64, 0xffff_ffff] {
      var b = QCOW2Builder()
      b.clusterBits = bits
      assertProbeError(QCOW2Probe.self, b.header() + [UInt8](repeating: 0, count: 4096), kind: .invalidField,
                       field: "cluster_bits", finding: "qcow2.cluster-bits")
    }
  }

  func testClusterBitsBounds() throws {
    for bits: UInt32 in [9, 16, 21] {
      var b = QCOW2Builder()
      b.clusterBits = bits
      b.l1TableOffset = 3 << UInt64(bits)
      b.refcountTableOffset = 1 << UInt64(bits)
      XCTAssertEqual(try probeBytes(QCOW2Probe.self, b.build())?.clusterSize, 1 << UInt64(bits))
    }
  }

  func testL1SizeAbsurd() {
    var b = QCOW2Builder()
    b.l1Size = 0xffff_ffff
    assertProbeError(QCOW2Probe.self, b.build(), kind: .limitExceeded, field: "l1_size", finding: "qcow2.l1-size")
  }

  func testL1TooSmallForVirtualSize() {
    var b = QCOW2Builder()
    b.size = 1 << 40  // needs 2^25 entries at 512-byte clusters
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "l1_size", finding: "qcow2.l1-size")
  }

  func testL1TableMisaligned() {
    var b = QCOW2Builder()
    b.l1TableOffset = 3 * 512 + 8
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "l1_table_offset", finding: "qcow2.l1-table")
  }

  func testSizeBeyondInt64() {
    var b = QCOW2Builder()
    b.size = UInt64.max
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField)
  }

  func testBackingFile() throws {
    var b = QCOW2Builder()
    b.backingFileOffset = 0x100
    b.backingFile = Array("base.raw".utf8)
    b.backingFileSize = 8
    b.extensions = [(0xe279_2aca, Array("raw".utf8))]
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(info.backingFilename, "base.raw")
    XCTAssertEqual(info.backingFormat, "raw")
    XCTAssertEqual(info.externalReferences, [ExternalReference(kind: "backing-file", name: "base.raw", offset: 0x100)])
    XCTAssertEqual(ids(info), ["qcow2.backing-file"])
    XCTAssertEqual(info.findings.first?.severity, .unsafe)
  }

  func testEmptyBackingFileName() throws {
    var b = QCOW2Builder()
    b.backingFileOffset = 0x100
    b.backingFileSize = 0
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertNil(info.backingFilename)
    XCTAssertEqual(ids(info), [])
  }

  func testBackingFileOffsetOutsideCluster() {
    var b = QCOW2Builder()
    b.backingFileOffset = 0x10_0000
    b.backingFileSize = 8
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "backing_file_offset", finding: "qcow2.backing-file-name")
  }

  func testBackingFileBeyondEndOfFile() {
    var b = QCOW2Builder()
    b.clusterBits = 16
    b.l1TableOffset = 3 << 16
    b.refcountTableOffset = 1 << 16
    b.backingFileOffset = 0x8000
    b.backingFileSize = 16
    // Only the header, no cluster padding: the name lies beyond the end of the file.
    assertProbeError(QCOW2Probe.self, b.header() + [UInt8](repeating: 0, count: 64), kind: .truncated)
  }

  func testBackingFileNameTooLong() {
    var b = QCOW2Builder()
    b.clusterBits = 16
    b.l1TableOffset = 3 << 16
    b.refcountTableOffset = 1 << 16
    b.backingFileOffset = 0x200
    b.backingFileSize = 1024
    assertProbeError(QCOW2Probe.self, b.build(), kind: .limitExceeded, field: "backing_file_size")
  }

  func testBackingFileInsideHeader() {
    var b = QCOW2Builder()
    b.backingFileOffset = 16
    b.backingFileSize = 8
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "backing_file_offset")
  }

  func testHeaderExtensionLengthOverflow() {
    for length in [UInt32.max, UInt32.max - 7, 600] {
      var b = QCOW2Builder()
      b.writeEndMarker = false
      var h = b.header()
      h += QCOW2Builder.be32(0x1234_5678) + QCOW2Builder.be32(length)
      let image = h + [UInt8](repeating: 0, count: 4096)
      assertProbeError(QCOW2Probe.self, image, kind: .invalidField, field: "header extension length", finding: "qcow2.header-extension")
    }
  }

  func testHeaderExtensionsDecoded() throws {
    var b = QCOW2Builder()
    var names = [UInt8]()
    names += [0, 5] + QCOWFamilyBuilders.text("future feature", 46)   // incompatible bit 5
    b.extensions = [(0x6803_f857, names), (0xdead_beef, [1, 2, 3])]
    b.incompatibleFeatures = 1 << 5
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(ids(info), ["qcow2.unknown-incompatible-features"])
    XCTAssertTrue(info.findings[0].message.contains("future feature"), info.findings[0].message)
    XCTAssertEqual(info.formatSpecific.json.at("unknown-extensions.0.type"), .string("0xdeadbeef"))
    XCTAssertEqual(info.formatSpecific.json.at("unknown-extensions.0.length"), .uint(3))
  }

  func testHeaderLengthInvalid() {
    for length: UInt32 in [72, 100, 105, 0x10000] {
      var b = QCOW2Builder()
      b.headerLength = length
      b.compressionType = 0
      var h = b.header()
      if h.count < 2048 { h += [UInt8](repeating: 0, count: 2048 - h.count) }
      assertProbeError(QCOW2Probe.self, h, kind: .invalidField, field: "header_length")
    }
  }

  func testHeaderLength104HasNoCompressionType() throws {
    var b = QCOW2Builder()
    b.headerLength = 104
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(info.formatSpecific.json["compression-type"], .string("zlib"))
  }

  func testRefcountOrder() throws {
    for order: UInt32 in 0...6 {
      var b = QCOW2Builder()
      b.refcountOrder = order
      XCTAssertEqual(try probeBytes(QCOW2Probe.self, b.build())?.formatSpecific.json["refcount-bits"], .uint(1 << UInt64(order)))
    }
    var b = QCOW2Builder()
    b.refcountOrder = 7
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "refcount_order")
  }

  func testCryptMethod() throws {
    var b = QCOW2Builder()
    b.cryptMethod = 3
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "crypt_method")
    b.cryptMethod = 2
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "crypt_method")  // no LUKS extension
    b.cryptMethod = 1
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(info.encrypted, true)
    XCTAssertEqual(info.formatSpecific.json.at("encrypt.format"), .string("aes"))
    XCTAssertEqual(ids(info), ["qcow2.encrypted"])
  }

  func testLUKSHeaderExtension() throws {
    var b = QCOW2Builder()
    b.cryptMethod = 2
    b.extensions = [(0x0537_be77, QCOW2Builder.be64(4 * 512) + QCOW2Builder.be64(2048))]
    b.refcounts[4] = 1; b.refcounts[5] = 1; b.refcounts[6] = 1; b.refcounts[7] = 1
    let luks = QCOWFamilyBuilders.luks1(fileSize: 2048)
    b.tail = [Array(luks[0..<512]), Array(luks[512..<1024]), Array(luks[1024..<1536]), Array(luks[1536..<2048])]
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(info.formatSpecific.json.at("encrypt.format"), .string("luks"))
    XCTAssertEqual(info.formatSpecific.json.at("encrypt.cipher-alg"), .string("aes-256"))
    XCTAssertEqual(info.formatSpecific.json.at("encrypt.slots.0.iters"), .uint(2000))
    XCTAssertEqual(ids(info), ["qcow2.encrypted"])
  }

  func testCompressionType() throws {
    var b = QCOW2Builder()
    b.compressionType = 1
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "compression_type")  // bit clear
    b.incompatibleFeatures = 1 << 3
    XCTAssertEqual(try probeBytes(QCOW2Probe.self, b.build())?.formatSpecific.json["compression-type"], .string("zstd"))
    b.compressionType = 2
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "compression_type")
  }

  func testExtendedL2NeedsLargeClusters() throws {
    var b = QCOW2Builder()
    b.incompatibleFeatures = 1 << 4
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "incompatible_features")
    b.clusterBits = 14
    b.l1TableOffset = 3 << 14
    b.refcountTableOffset = 1 << 14
    XCTAssertEqual(try probeBytes(QCOW2Probe.self, b.build())?.formatSpecific.json["extended-l2"], .bool(true))
  }

  func testDirtyCorruptAndLazy() throws {
    var b = QCOW2Builder()
    b.incompatibleFeatures = 0x3
    b.compatibleFeatures = 1
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(info.dirty, true)
    XCTAssertEqual(info.formatSpecific.json["corrupt"], .bool(true))
    XCTAssertEqual(info.formatSpecific.json["lazy-refcounts"], .bool(true))
    XCTAssertEqual(Set(ids(info)), ["qcow2.corrupt-bit", "qcow2.dirty"])
    XCTAssertEqual(info.findings.first { $0.id == "qcow2.dirty" }?.severity, .warning)
    XCTAssertEqual(info.findings.first { $0.id == "qcow2.corrupt-bit" }?.severity, .corrupt)
  }

  func testExternalDataFile() throws {
    var b = QCOW2Builder()
    b.incompatibleFeatures = 1 << 2
    b.autoclearFeatures = 1 << 1
    b.extensions = [(0x4441_5441, Array("disk.raw".utf8))]
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(info.formatSpecific.json["data-file"], .string("disk.raw"))
    XCTAssertEqual(info.formatSpecific.json["data-file-raw"], .bool(true))
    XCTAssertEqual(info.externalReferences.map(\.name), ["disk.raw"])
    XCTAssertEqual(info.externalReferences.map(\.kind), ["data-file"])
    XCTAssertEqual(ids(info), ["qcow2.data-file"])
    // Raw external data without a data file is invalid.
    b.incompatibleFeatures = 0
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, field: "autoclear_features")
  }

  func testRefcountTableBounds() {
    var b = QCOW2Builder()
    b.refcountTableClusters = 0
    assertProbeError(QCOW2Probe.self, b.build(), finding: "qcow2.refcount-table")
    b.refcountTableClusters = 0x10_0000
    assertProbeError(QCOW2Probe.self, b.build(), kind: .limitExceeded, finding: "qcow2.refcount-table")
    b.refcountTableClusters = 1
    b.refcountTableOffset = 513
    assertProbeError(QCOW2Probe.self, b.build(), finding: "qcow2.refcount-table")
  }

  func testTablesBeyondEndOfFile() throws {
    var b = QCOW2Builder()
    b.l1TableOffset = 1 << 30
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(ids(info), ["qcow2.truncated"])
    XCTAssertEqual(info.findings.first?.severity, .corrupt)
  }

  func testSnapshotTable() throws {
    var b = QCOW2Builder()
    b.nbSnapshots = 1
    b.snapshotsOffset = 4 * 512
    var e = [UInt8]()
    e += QCOW2Builder.be64(5 * 512)  // l1_table_offset
    e += QCOW2Builder.be32(1)        // l1_size
    e += QCOW2Builder.be16(1)        // id_str_size
    e += QCOW2Builder.be16(4)        // name_size
    e += QCOW2Builder.be32(1_700_000_000)  // date_sec
    e += QCOW2Builder.be32(5)        // date_nsec
    e += QCOW2Builder.be64(3_000_000_001)  // vm_clock_nsec
    e += QCOW2Builder.be32(0)        // vm_state_size
    e += QCOW2Builder.be32(24)       // extra_data_size
    e += QCOW2Builder.be64(0) + QCOW2Builder.be64(1 << 20) + QCOW2Builder.be64(7)  // extra: vm state, disk size, icount
    e += Array("1".utf8) + Array("snap".utf8)
    b.tail = [e, []]
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(ids(info), [])
    let s = info.formatSpecific.json
    XCTAssertEqual(s.at("snapshots.0.id"), .string("1"))
    XCTAssertEqual(s.at("snapshots.0.name"), .string("snap"))
    XCTAssertEqual(s.at("snapshots.0.icount"), .uint(7))
    XCTAssertEqual(s.at("snapshots.0.vm-clock-sec"), .uint(3))
    XCTAssertEqual(s.at("snapshots.0.vm-clock-nsec"), .uint(1))
    XCTAssertEqual(s.at("snapshots.0.disk-size"), .uint(1 << 20))

    // Entries declared past the end of the file make a corrupt snapshot table.
    b.nbSnapshots = 100
    let cut = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertTrue(ids(cut).contains("qcow2.snapshot-table"), "\(ids(cut))")
    // Too many snapshots.
    b.nbSnapshots = 70000
    assertProbeError(QCOW2Probe.self, b.build(), kind: .limitExceeded, field: "nb_snapshots")
    // Oversized extra data.
    b.nbSnapshots = 1
    var big = e
    big.replaceSubrange(36..<40, with: QCOW2Builder.be32(5000))
    b.tail = [big, []]
    let hostile = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(ids(hostile), ["qcow2.snapshot-table"])
  }

  func testBitmapsExtension() throws {
    var b = QCOW2Builder()
    b.autoclearFeatures = 1
    b.extensions = [(0x2385_2875, QCOW2Builder.be32(1) + QCOW2Builder.be32(0) + QCOW2Builder.be64(32) + QCOW2Builder.be64(4 * 512))]
    var d = [UInt8]()
    d += QCOW2Builder.be64(5 * 512)  // bitmap_table_offset
    d += QCOW2Builder.be32(1)        // bitmap_table_size
    d += QCOW2Builder.be32(2)        // flags: auto
    d += [1, 16]                     // type, granularity_bits
    d += QCOW2Builder.be16(2)        // name_size
    d += QCOW2Builder.be32(0)        // extra_data_size
    d += Array("b0".utf8)
    b.tail = [d, []]
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(ids(info), [])
    XCTAssertEqual(info.formatSpecific.json.at("bitmaps.0.name"), .string("b0"))
    XCTAssertEqual(info.formatSpecific.json.at("bitmaps.0.granularity"), .uint(65536))
    XCTAssertEqual(info.formatSpecific.json.at("bitmaps.0.flags.0"), .string("auto"))
    // Stale extension (autoclear bit clear): QEMU ignores the bitmaps, and so does imgtool.
    b.autoclearFeatures = 0
    XCTAssertNil(try probeBytes(QCOW2Probe.self, b.build())?.formatSpecific.json["bitmaps"])
    // Granularity out of range.
    b.autoclearFeatures = 1
    d[17] = 40
    b.tail = [d, []]
    XCTAssertEqual(ids(try probeBytes(QCOW2Probe.self, b.build())), ["qcow2.bitmaps"])
    // Extension too short.
    b.extensions = [(0x2385_2875, [0, 0, 0, 1])]
    assertProbeError(QCOW2Probe.self, b.build(), kind: .invalidField, finding: "qcow2.header-extension")
  }

  func testStreamNeedsSeekable() throws {
    // A snapshot table beyond the 64 KiB a stream keeps here: a warning, not a guess.
    var b = QCOW2Builder()
    b.nbSnapshots = 1
    b.snapshotsOffset = 1 << 20
    var bytes = b.build()
    bytes += [UInt8](repeating: 0, count: (64 << 10) - bytes.count)
    let ctx = try ProbeContext(source: MemorySource(bytes, name: "stream", declaredSize: 2 << 20))
    let info = try XCTUnwrap(try QCOW2Probe.probe(ctx))
    XCTAssertEqual(ids(info), ["qcow2.needs-seekable"])
    XCTAssertEqual(info.findings.first?.severity, .warning)
  }

  func testCryptoHeaderMalformed() throws {
    var b = QCOW2Builder()
    b.cryptMethod = 2
    b.extensions = [(0x0537_be77, QCOW2Builder.be64(4 * 512) + QCOW2Builder.be64(1024))]
    b.tail = [[UInt8](repeating: 0x41, count: 512), []]  // not a LUKS header
    let info = try XCTUnwrap(probeBytes(QCOW2Probe.self, b.build()))
    XCTAssertEqual(Set(ids(info)), ["qcow2.encrypted", "qcow2.crypto-header"])
  }

  // MARK: legacy qcow

  func testLegacyQCOW() throws {
    let info = try XCTUnwrap(probeBytes(QCOWProbe.self, QCOWFamilyBuilders.qcow()))
    XCTAssertEqual(info.qemuFormat, "qcow")
    XCTAssertEqual(info.diskFormat, .qcow)
    XCTAssertFalse(info.diskFormat.isImageServiceValue)
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(info.clusterSize, 4096)
    XCTAssertEqual(ids(info), ["qcow.banned"])
    XCTAssertEqual(info.findings[0].severity, .unsafe)
    XCTAssertNil(try probeBytes(QCOWProbe.self, QCOW2Builder().build()), "version 3 is qcow2")
    XCTAssertNil(try probeBytes(QCOW2Probe.self, QCOWFamilyBuilders.qcow()), "version 1 is not qcow2")

    let backed = try XCTUnwrap(probeBytes(QCOWProbe.self, QCOWFamilyBuilders.qcow(backing: "base.img")))
    XCTAssertEqual(backed.backingFilename, "base.img")
    XCTAssertEqual(ids(backed), ["qcow.backing-file", "qcow.banned"])
    let enc = try XCTUnwrap(probeBytes(QCOWProbe.self, QCOWFamilyBuilders.qcow(crypt: 1)))
    XCTAssertEqual(enc.encrypted, true)
    XCTAssertEqual(ids(enc), ["qcow.encrypted", "qcow.banned"])
  }

  func testLegacyQCOWTruncated() throws {
    // 1 GiB at 4 KiB clusters and 512-entry L2 tables: a 4 KiB L1 table, cut off at 1 KiB.
    let info = try XCTUnwrap(probeBytes(QCOWProbe.self, QCOWFamilyBuilders.qcow(size: 1 << 40)))
    XCTAssertEqual(ids(info), ["qcow.truncated", "qcow.banned"])
    XCTAssertEqual(info.findings.first?.severity, .corrupt)
  }

  func testLegacyQCOWHostile() {
    assertProbeError(QCOWProbe.self, QCOWFamilyBuilders.qcow(clusterBits: 20), kind: .invalidField, field: "cluster_bits")
    assertProbeError(QCOWProbe.self, QCOWFamilyBuilders.qcow(l2Bits: 30), kind: .invalidField, field: "l2_bits")
    assertProbeError(QCOWProbe.self, QCOWFamilyBuilders.qcow(crypt: 2), kind: .invalidField, field: "crypt_method")
    assertProbeError(QCOWProbe.self, QCOWFamilyBuilders.qcow(size: 0), kind: .invalidField, field: "size")
    assertProbeError(QCOWProbe.self, QCOWFamilyBuilders.qcow(size: UInt64.max), kind: .limitExceeded, field: "size")
    assertProbeError(QCOWProbe.self, QCOWFamilyBuilders.qcow(backing: "x", backingSize: 2000), kind: .limitExceeded)
    assertProbeError(QCOWProbe.self, QCOWFamilyBuilders.qcow(backing: "x", backingSize: 1000), kind: .truncated)
    assertProbeError(QCOWProbe.self, Array(QCOWFamilyBuilders.qcow().prefix(30)), kind: .truncated)
  }

  // MARK: QED

  func testQED() throws {
    let info = try XCTUnwrap(probeBytes(QEDProbe.self, QCOWFamilyBuilders.qed()))
    XCTAssertEqual(info.qemuFormat, "qed")
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(info.clusterSize, 4096)
    XCTAssertEqual(info.dirty, false)
    XCTAssertEqual(ids(info), ["qed.banned"])
    let backed = try XCTUnwrap(probeBytes(QEDProbe.self, QCOWFamilyBuilders.qed(features: 4, backing: "base.raw")))
    XCTAssertEqual(backed.backingFilename, "base.raw")
    XCTAssertEqual(backed.backingFormat, "raw")
    XCTAssertEqual(ids(backed), ["qed.backing-file", "qed.banned"])
    let dirty = try XCTUnwrap(probeBytes(QEDProbe.self, QCOWFamilyBuilders.qed(features: 2)))
    XCTAssertEqual(dirty.dirty, true)
    XCTAssertEqual(ids(dirty), ["qed.dirty", "qed.banned"])
  }

  func testQEDHostile() {
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(clusterSize: 1000), kind: .invalidField, field: "cluster_size")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(clusterSize: 1 << 30), kind: .invalidField, field: "cluster_size")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(tableSize: 3), kind: .invalidField, field: "table_size")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(tableSize: 32), kind: .invalidField, field: "table_size")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(features: 1 << 9), kind: .unsupported, field: "features")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(imageSize: 1000), kind: .invalidField, field: "image_size")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(imageSize: 1 << 62), kind: .invalidField, field: "image_size")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(headerSize: 0), kind: .invalidField, field: "header_size")
    assertProbeError(QEDProbe.self, QCOWFamilyBuilders.qed(backing: "b", backingOffset: 5000), kind: .invalidField,
                     field: "backing_filename_offset")
    assertProbeError(QEDProbe.self, Array(QCOWFamilyBuilders.qed().prefix(50)), kind: .truncated)
    let cut = try? probeBytes(QEDProbe.self, Array(QCOWFamilyBuilders.qed().prefix(4096)))
    XCTAssertEqual(ids(cut ?? nil), ["qed.truncated", "qed.banned"])
  }

  // MARK: LUKS

  func testLUKS1() throws {
    let info = try XCTUnwrap(probeBytes(LUKSProbe.self, QCOWFamilyBuilders.luks1()))
    XCTAssertEqual(info.qemuFormat, "luks")
    XCTAssertEqual(info.diskFormat, .luks)
    XCTAssertEqual(info.subformat, "luks1")
    XCTAssertEqual(info.virtualSize, 512)
    XCTAssertEqual(info.encrypted, true)
    let fs = info.formatSpecific.json
    XCTAssertEqual(fs["cipher-alg"], .string("aes-256"))
    XCTAssertEqual(fs["cipher-mode"], .string("xts"))
    XCTAssertEqual(fs["ivgen-alg"], .string("plain64"))
    XCTAssertEqual(fs["payload-offset"], .uint(4096))
    XCTAssertEqual(fs.at("slots.0.key-offset"), .uint(4096))
    XCTAssertEqual(fs.at("slots.1.active"), .bool(false))
    XCTAssertNil(fs.at("slots.1.iters"))
    XCTAssertEqual(ids(info), ["luks.encrypted"])
    let essiv = try XCTUnwrap(probeBytes(LUKSProbe.self, QCOWFamilyBuilders.luks1(keyBytes: 16, mode: "cbc-essiv:sha256")))
    XCTAssertEqual(essiv.formatSpecific.json["cipher-alg"], .string("aes-128"))
    XCTAssertEqual(essiv.formatSpecific.json["ivgen-alg"], .string("essiv"))
    XCTAssertEqual(essiv.formatSpecific.json["ivgen-hash-alg"], .string("sha256"))
  }

  func testLUKS1Hostile() {
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks1(active: 0x1234), kind: .invalidField, finding: "luks.key-slot")
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks1(payloadSectors: 100_000, fileSize: 4096), kind: .truncated,
                     finding: "luks.truncated")
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks1(keyBytes: 0), kind: .invalidField, field: "key_bytes")
    assertProbeError(LUKSProbe.self, Array(QCOWFamilyBuilders.luks1().prefix(300)), kind: .truncated)
    var v3 = QCOWFamilyBuilders.luks1()
    v3[7] = 3
    assertProbeError(LUKSProbe.self, v3, kind: .unsupported, field: "version")
  }

  func testLUKS2() throws {
    let info = try XCTUnwrap(probeBytes(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: QCOWFamilyBuilders.luks2JSON)))
    XCTAssertEqual(info.subformat, "luks2")
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(info.encrypted, true)
    let fs = info.formatSpecific.json
    XCTAssertEqual(fs["cipher-alg"], .string("aes-256"))
    XCTAssertEqual(fs["payload-offset"], .uint(1 << 20))
    XCTAssertEqual(fs.at("slots.0.kdf"), .string("pbkdf2"))
    XCTAssertEqual(fs.at("slots.0.key-offset"), .uint(32768))
    XCTAssertEqual(ids(info), ["luks.encrypted"])
    let required = QCOWFamilyBuilders.luks2JSON.replacingOccurrences(
      of: "\"keyslots_size\":\"1015808\"", with: "\"keyslots_size\":\"1015808\",\"requirements\":{\"mandatory\":[\"online-reencrypt-v2\"]}")
    let req = try XCTUnwrap(probeBytes(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: required)))
    XCTAssertEqual(req.formatSpecific.json.at("requirements.0"), .string("online-reencrypt-v2"))
    let fixed = QCOWFamilyBuilders.luks2JSON.replacingOccurrences(of: "\"size\":\"dynamic\"", with: "\"size\":\"65536\"")
    XCTAssertEqual(try probeBytes(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: fixed))?.virtualSize, 65536)
  }

  func testLUKS2Hostile() {
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: QCOWFamilyBuilders.luks2JSON, hdrSize: 5000),
                     kind: .invalidField, field: "hdr_size")
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: QCOWFamilyBuilders.luks2JSON, hdrSize: 1 << 40),
                     kind: .invalidField, field: "hdr_size")
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: "{\"segments\": {"), kind: .invalidField)
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: "[1]"), kind: .invalidField, finding: "luks.json")
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: "{\"segments\":{}}"), kind: .invalidField, finding: "luks.json")
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: "{\"segments\":{\"0\":{\"type\":\"crypt\",\"offset\":\"99999999999\"}}}"),
                     kind: .truncated, finding: "luks.truncated")
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: "{\"segments\":{\"0\":{\"type\":\"crypt\",\"offset\":\"x\"}}}"),
                     kind: .invalidField, finding: "luks.json")
    let deep = String(repeating: "[", count: 10000)
    assertProbeError(LUKSProbe.self, QCOWFamilyBuilders.luks2(json: deep), kind: .invalidField)
    assertProbeError(LUKSProbe.self, Array(QCOWFamilyBuilders.luks2(json: QCOWFamilyBuilders.luks2JSON).prefix(6000)), kind: .truncated)
  }

  // MARK: fixtures against qemu-img

  /// Snapshots are a top-level key in qemu-img info; imgtool keeps them under format-specific.
  func testSnapshotsMatchQemu() throws {
    guard Fixtures.run(["qemu-img", "--version"]).0 == 0 else { throw XCTSkip("qemu-img is not installed") }
    let path = try Fixtures.path("qcow", "snap.qcow2")
    let ours = try Fixtures.info(path)
    let theirs = try Fixtures.qemuInfo(path, format: "qcow2")
    for key in ["id", "name", "vm-state-size", "date-sec", "date-nsec", "vm-clock-sec", "vm-clock-nsec", "icount"] {
      XCTAssertEqual(ours.at("format-specific.data.snapshots.0.\(key)"), theirs.at("snapshots.0.\(key)"), key)
    }
  }
}
