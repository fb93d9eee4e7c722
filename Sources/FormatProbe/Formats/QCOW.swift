/// Legacy QCOW, version 1: QEMU's first copy-on-write format, superseded by qcow2 in 2006.
///
/// Reference: QEMU `block/qcow.c` (the format has no separate specification). Detection: the
/// magic `QFI\xfb` at offset 0 and version 1 (versions 2 and 3 are qcow2). Everything reported
/// lies in the 48-byte header and the backing file name after it.
public enum QCOWProbe: FormatProbe {
  public static let id = "qcow"
  public static let role = ProbeRole.image
  static let format = "qcow"

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let r = ctx.headReader(format)
    guard r.matches(QCOW2Header.magic, at: 0), r.count >= 8, try r.u32BE(at: 4, "version") == 1 else { return nil }
    var h = try QCOWHeader.decode(r)
    try h.validate()
    var info = ImageInfo(probe: id, qemuFormat: "qcow", diskFormat: .qcow, subformat: "v1", virtualSize: h.size)
    info.clusterSize = UInt64(1) << UInt64(h.clusterBits)
    info.dirty = false
    info.encrypted = h.cryptMethod != 0
    var fs = JSONObject()
    fs.set("cluster-bits", UInt64(h.clusterBits))
    fs.set("l2-bits", UInt64(h.l2Bits))
    fs.set("crypt-method", h.cryptMethod == 1 ? "aes" : "none")
    fs.set("l1-table-offset", h.l1TableOffset)
    fs.set("l1-size", h.l1Size)
    fs.set("mtime", UInt64(h.mtime))
    info.formatSpecific = fs
    if h.backingFileOffset != 0, h.backingFileSize > 0 {
      let name = Text.utf8(try ctx.reader(at: h.backingFileOffset, count: Int(h.backingFileSize), format, "backing file name").bytes)
      info.backingFilename = name
      info.externalReferences.append(ExternalReference(kind: "backing-file", name: name, offset: h.backingFileOffset))
      info.findings.append(Finding("qcow.backing-file", .unsafe, field: "backing_file_offset", offset: 8,
                                   "the image reads unallocated clusters from backing file '\(name)', outside the image"))
    }
    if h.cryptMethod != 0 {
      info.findings.append(Finding("qcow.encrypted", .unsafe, field: "crypt_method", offset: 36,
                                   "the guest data is encrypted with legacy AES-CBC; its content cannot be verified without the key"))
    }
    let l1End = h.l1Size * 8
    if h.l1TableOffset > ctx.size || l1End > ctx.size - h.l1TableOffset {
      info.findings.append(Finding("qcow.truncated", .corrupt, field: "l1_table_offset", offset: 40,
                                   "the L1 table at \(hex(h.l1TableOffset)) (\(l1End) bytes) ends beyond the end of the file (\(ctx.size) bytes)"))
    }
    info.findings.append(banned)
    return info
  }

  static let banned = Finding(
    "qcow.banned", .unsafe, field: "version", offset: 4,
    "legacy QCOW (version 1) has no image-service disk_format, QEMU keeps it only for reading old images, and its weak AES mode and unchecked tables are a known attack surface: an image service must not accept it",
    fix: "qemu-img convert -f qcow -O qcow2")
}

enum QCOWLimits {
  /// Clusters of 512 bytes to 64 KiB (QEMU block/qcow.c refuses cluster_bits outside 9..16).
  static let clusterBits: ClosedRange<UInt8> = 9...16
  /// L2 tables of 512 bytes to 64 KiB of 8-byte entries (QEMU: l2_bits 6..13).
  static let l2Bits: ClosedRange<UInt8> = 6...13
  /// Backing file names of at most 1023 bytes (QEMU's limit).
  static let maxBackingFileName: UInt32 = 1023
  /// The L1 table at most INT_MAX / 8 entries, QEMU's bound.
  static let maxL1Entries: UInt64 = UInt64(Int32.max) / 8
}

/// The legacy QCOW header, big-endian:
///
///     offset size field
///          0    4 magic                "QFI\xfb"
///          4    4 version              1
///          8    8 backing_file_offset
///         16    4 backing_file_size
///         20    4 mtime
///         24    8 size                 virtual size in bytes
///         32    1 cluster_bits
///         33    1 l2_bits
///         34    2 padding
///         36    4 crypt_method         0 none, 1 AES-CBC
///         40    8 l1_table_offset
struct QCOWHeader: Sendable {
  var backingFileOffset: UInt64
  var backingFileSize: UInt32
  var mtime: UInt32
  var size: UInt64
  var clusterBits: UInt8
  var l2Bits: UInt8
  var cryptMethod: UInt32
  var l1TableOffset: UInt64
  var l1Size: UInt64 = 0

  static func decode(_ head: ByteReader) throws(ImageError) -> QCOWHeader {
    var r = head
    try r.seek(to: 8, "backing_file_offset")
    let backingOffset = try r.u64BE("backing_file_offset")
    let backingSize = try r.u32BE("backing_file_size")
    let mtime = try r.u32BE("mtime")
    let size = try r.u64BE("size")
    let clusterBits = try r.u8("cluster_bits")
    let l2Bits = try r.u8("l2_bits")
    try r.skip(2, "padding")
    return QCOWHeader(backingFileOffset: backingOffset, backingFileSize: backingSize, mtime: mtime, size: size,
                      clusterBits: clusterBits, l2Bits: l2Bits, cryptMethod: try r.u32BE("crypt_method"),
                      l1TableOffset: try r.u64BE("l1_table_offset"))
  }

  mutating func validate() throws(ImageError) {
    let f = "qcow"
    guard size > 1 else {
      throw ImageError(.invalidField, format: f, field: "size", offset: 24, "is \(size); QEMU needs at least 2 bytes")
    }
    guard QCOWLimits.clusterBits.contains(clusterBits) else {
      throw ImageError(.invalidField, format: f, field: "cluster_bits", offset: 32, "is \(clusterBits); allowed 9..16")
    }
    guard QCOWLimits.l2Bits.contains(l2Bits) else {
      throw ImageError(.invalidField, format: f, field: "l2_bits", offset: 33, "is \(l2Bits); allowed 6..13")
    }
    guard cryptMethod <= 1 else {
      throw ImageError(.invalidField, format: f, field: "crypt_method", offset: 36, "is \(cryptMethod); defined: 0 none, 1 AES")
    }
    let shift = UInt64(clusterBits) + UInt64(l2Bits)
    l1Size = Checked.ceilDiv(size, UInt64(1) << shift)
    guard l1Size <= QCOWLimits.maxL1Entries, size <= UInt64(Int64.max) else {
      throw ImageError(.limitExceeded, format: f, field: "size", offset: 24, "is \(size); its L1 table would exceed QEMU's limit")
    }
    guard l1TableOffset <= UInt64(Int64.max) - l1Size * 8 else {
      throw ImageError(.invalidField, format: f, field: "l1_table_offset", offset: 40, "is \(hex(l1TableOffset)), beyond 2^63")
    }
    if backingFileOffset != 0 {
      guard backingFileSize <= QCOWLimits.maxBackingFileName else {
        throw ImageError(.limitExceeded, format: f, field: "backing_file_size", offset: 16,
                         "is \(backingFileSize); backing file names are at most 1023 bytes")
      }
      guard backingFileOffset >= 48, backingFileOffset <= UInt64(Int64.max) else {
        throw ImageError(.invalidField, format: f, field: "backing_file_offset", offset: 8,
                         "is \(hex(backingFileOffset)), inside the header or beyond 2^63")
      }
    }
  }
}
