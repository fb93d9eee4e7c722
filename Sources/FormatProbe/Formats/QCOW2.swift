/// qcow2, QEMU's copy-on-write format, versions 2 (compat 0.10) and 3 (compat 1.1).
///
/// Reference: QEMU `docs/interop/qcow2.txt` ("QCOW2 Image Format"). Detection: the magic
/// `QFI\xfb` at offset 0 with version 2 or 3 (version 1 is legacy qcow, `QCOW.swift`). Everything
/// `info` reports lies in the first cluster (header, extensions, backing file name) plus the
/// snapshot table, the bitmap directory and the LUKS header, which may lie anywhere.
public enum QCOW2Probe: FormatProbe {
  public static let id = "qcow2"
  public static let role = ProbeRole.image
  static let format = "qcow2"

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let r = ctx.headReader(format)
    guard r.matches(QCOW2Header.magic, at: 0), r.count >= 8 else { return nil }
    let version = try r.u32BE(at: 4, "version")
    if version == 1 { return nil }  // legacy qcow
    let image = try QCOW2Image.open(ctx)
    return image.info(fileSize: ctx.size)
  }
}

/// Limits enforced on qcow2 headers. Values follow QEMU's block/qcow2.h where QEMU has one.
enum QCOW2Limits {
  /// Smallest cluster: 512 bytes (QEMU MIN_CLUSTER_BITS; the spec requires cluster_bits >= 9).
  static let minClusterBits: UInt32 = 9
  /// Largest cluster: 2 MiB (QEMU MAX_CLUSTER_BITS).
  static let maxClusterBits: UInt32 = 21
  /// Extended L2 entries need clusters of at least 16 KiB (32 subclusters of 512 bytes or more).
  static let minExtendedL2ClusterBits: UInt32 = 14
  /// Backing file names are at most 1023 bytes (spec; QEMU refuses longer ones).
  static let maxBackingFileName: UInt32 = 1023
  /// External data file names share the same 1023-byte limit in QEMU (its filename buffers).
  static let maxDataFileName: UInt32 = 1023
  /// Active L1 table at most 32 MiB (QEMU QCOW_MAX_L1_SIZE).
  static let maxL1Bytes: UInt64 = 32 << 20
  /// Refcount table at most 8 MiB (QEMU QCOW_MAX_REFTABLE_SIZE).
  static let maxRefcountTableBytes: UInt64 = 8 << 20
  /// At most 65536 snapshots (QEMU QCOW_MAX_SNAPSHOTS).
  static let maxSnapshots: UInt32 = 65536
  /// Snapshot table at most 64 MiB (QEMU QCOW_MAX_SNAPSHOTS_SIZE).
  static let maxSnapshotTableBytes: UInt64 = 64 << 20
  /// Snapshot extra data at most 1 KiB (QEMU QCOW_MAX_SNAPSHOT_EXTRA_DATA).
  static let maxSnapshotExtraData: UInt32 = 1024
  /// refcount_order at most 6: 64-bit refcounts (spec).
  static let maxRefcountOrder: UInt32 = 6
  /// At most 65535 persistent bitmaps (QEMU QCOW2_MAX_BITMAPS).
  static let maxBitmaps: UInt32 = 65535
  /// Bitmap directory at most 64 MiB (QEMU QCOW2_MAX_BITMAP_DIRECTORY_SIZE).
  static let maxBitmapDirectoryBytes: UInt64 = 64 << 20
  /// Bitmap names at most 1023 bytes (QEMU BME_MAX_NAME_SIZE).
  static let maxBitmapName: UInt16 = 1023
  /// Bitmap granularity 512 B .. 2 GiB (QEMU BME_MIN/MAX_GRANULARITY_BITS).
  static let bitmapGranularityBits: ClosedRange<UInt8> = 9...31
  /// Bitmap table at most 2^27 entries (QEMU BME_MAX_TABLE_SIZE).
  static let maxBitmapTableEntries: UInt32 = 0x800_0000
  /// Snapshots listed in `info` output; all are still decoded and counted.
  static let maxReportedSnapshots = 1000
  /// Unknown header extensions listed in `info` output.
  static let maxReportedExtensions = 64
  /// Bytes read at a time from variable-length tables (snapshot table, bitmap directory).
  static let tableWindow = 1 << 20
}

/// Feature bits (spec, "Header", bytes 72-95).
enum QCOW2Feature {
  static let dirty: UInt64 = 1 << 0
  static let corrupt: UInt64 = 1 << 1
  static let externalDataFile: UInt64 = 1 << 2
  static let compressionType: UInt64 = 1 << 3
  static let extendedL2: UInt64 = 1 << 4
  static let knownIncompatible: UInt64 = 0x1f
  static let lazyRefcounts: UInt64 = 1 << 0
  static let autoclearBitmaps: UInt64 = 1 << 0
  static let autoclearRawData: UInt64 = 1 << 1

  static let incompatibleNames = ["dirty bit", "corrupt bit", "external data file", "compression type", "extended L2 entries"]
}

/// The qcow2 header, decoded in spec order. All fields big-endian.
///
///     offset size field
///          0    4 magic                   "QFI\xfb"
///          4    4 version                 2 or 3
///          8    8 backing_file_offset     0: no backing file
///         16    4 backing_file_size       bytes, not NUL-terminated
///         20    4 cluster_bits            9..21
///         24    8 size                    virtual size in bytes
///         32    4 crypt_method            0 none, 1 AES-CBC, 2 LUKS
///         36    4 l1_size                 entries in the active L1 table
///         40    8 l1_table_offset
///         48    8 refcount_table_offset
///         56    4 refcount_table_clusters
///         60    4 nb_snapshots
///         64    8 snapshots_offset
///     version 3 only (version 2 implies the defaults in brackets):
///         72    8 incompatible_features   [0]
///         80    8 compatible_features     [0]
///         88    8 autoclear_features      [0]
///         96    4 refcount_order          [4]
///        100    4 header_length           [72]; >= 104, multiple of 8
///        104    1 compression_type        present when header_length > 104; 0 zlib, 1 zstd
///        105    7 padding
struct QCOW2Header: Sendable {
  static let magic: [UInt8] = [0x51, 0x46, 0x49, 0xfb]

  var version: UInt32
  var backingFileOffset: UInt64
  var backingFileSize: UInt32
  var clusterBits: UInt32
  var size: UInt64
  var cryptMethod: UInt32
  var l1Size: UInt32
  var l1TableOffset: UInt64
  var refcountTableOffset: UInt64
  var refcountTableClusters: UInt32
  var nbSnapshots: UInt32
  var snapshotsOffset: UInt64
  var incompatibleFeatures: UInt64 = 0
  var compatibleFeatures: UInt64 = 0
  var autoclearFeatures: UInt64 = 0
  var refcountOrder: UInt32 = 4
  var headerLength: UInt32 = 72
  var compressionType: UInt8 = 0

  static func decode(_ head: ByteReader) throws(ImageError) -> QCOW2Header {
    var r = head
    try r.seek(to: 4, "version")
    let version = try r.u32BE("version")
    guard version == 2 || version == 3 else {
      throw ImageError(.unsupported, format: "qcow2", field: "version", offset: 4,
                       "is \(version); qcow2 defines versions 2 and 3 (1 is legacy qcow)")
    }
    var h = QCOW2Header(version: version,
                        backingFileOffset: try r.u64BE("backing_file_offset"),
                        backingFileSize: try r.u32BE("backing_file_size"),
                        clusterBits: try r.u32BE("cluster_bits"),
                        size: try r.u64BE("size"),
                        cryptMethod: try r.u32BE("crypt_method"),
                        l1Size: try r.u32BE("l1_size"),
                        l1TableOffset: try r.u64BE("l1_table_offset"),
                        refcountTableOffset: try r.u64BE("refcount_table_offset"),
                        refcountTableClusters: try r.u32BE("refcount_table_clusters"),
                        nbSnapshots: try r.u32BE("nb_snapshots"),
                        snapshotsOffset: try r.u64BE("snapshots_offset"))
    if version == 3 {
      h.incompatibleFeatures = try r.u64BE("incompatible_features")
      h.compatibleFeatures = try r.u64BE("compatible_features")
      h.autoclearFeatures = try r.u64BE("autoclear_features")
      h.refcountOrder = try r.u32BE("refcount_order")
      h.headerLength = try r.u32BE("header_length")
      guard h.headerLength >= 104, h.headerLength % 8 == 0 else {
        throw ImageError(.invalidField, format: "qcow2", field: "header_length", offset: 100,
                         "is \(h.headerLength); version 3 needs at least 104 and a multiple of 8")
      }
      if h.headerLength > 104 { h.compressionType = try r.u8(at: 104, "compression_type") }
    }
    return h
  }

  var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
  var extendedL2: Bool { incompatibleFeatures & QCOW2Feature.extendedL2 != 0 }
  var hasDataFile: Bool { incompatibleFeatures & QCOW2Feature.externalDataFile != 0 }
  /// Bytes per L2 entry: 8, or 16 with extended L2 (entry + subcluster bitmap).
  var l2EntrySize: UInt64 { extendedL2 ? 16 : 8 }
  var l2Entries: UInt64 { clusterSize / l2EntrySize }
  var refcountBits: UInt64 { 1 << UInt64(refcountOrder) }
  var refcountTableBytes: UInt64 { UInt64(refcountTableClusters) << UInt64(clusterBits) }

  /// Range checks QEMU applies when opening (block/qcow2.c, qcow2_do_open), plus the spec's.
  func validate() throws(ImageError) {
    let f = "qcow2"
    guard clusterBits >= QCOW2Limits.minClusterBits, clusterBits <= QCOW2Limits.maxClusterBits else {
      throw ImageError(.invalidField, format: f, field: "cluster_bits", offset: 20,
                       "is \(clusterBits); allowed 9..21 (512 bytes to 2 MiB)", finding: "qcow2.cluster-bits")
    }
    guard UInt64(headerLength) <= clusterSize else {
      throw ImageError(.invalidField, format: f, field: "header_length", offset: 100,
                       "is \(headerLength), larger than the \(clusterSize)-byte cluster")
    }
    guard refcountOrder <= QCOW2Limits.maxRefcountOrder else {
      throw ImageError(.invalidField, format: f, field: "refcount_order", offset: 96,
                       "is \(refcountOrder); refcount entries are at most 64 bits (order 6)")
    }
    guard cryptMethod <= 2 else {
      throw ImageError(.invalidField, format: f, field: "crypt_method", offset: 32,
                       "is \(cryptMethod); defined: 0 none, 1 AES, 2 LUKS")
    }
    if compressionType > 1 {
      throw ImageError(.invalidField, format: f, field: "compression_type", offset: 104,
                       "is \(compressionType); defined: 0 zlib, 1 zstd")
    }
    if compressionType != 0, incompatibleFeatures & QCOW2Feature.compressionType == 0 {
      throw ImageError(.invalidField, format: f, field: "compression_type", offset: 104,
                       "is \(compressionType) but the compression type incompatible feature bit is clear")
    }
    if extendedL2, clusterBits < QCOW2Limits.minExtendedL2ClusterBits {
      throw ImageError(.invalidField, format: f, field: "incompatible_features", offset: 72,
                       "sets extended L2 entries with \(clusterSize)-byte clusters; they need at least 16 KiB")
    }
    if autoclearFeatures & QCOW2Feature.autoclearRawData != 0, !hasDataFile {
      throw ImageError(.invalidField, format: f, field: "autoclear_features", offset: 88,
                       "sets raw external data without the external data file feature")
    }
    // Backing file name: inside the first cluster, at most 1023 bytes (QEMU: "Invalid backing file offset").
    if backingFileOffset != 0 {
      guard backingFileSize <= QCOW2Limits.maxBackingFileName else {
        throw ImageError(.limitExceeded, format: f, field: "backing_file_size", offset: 16,
                         "is \(backingFileSize); backing file names are at most 1023 bytes", finding: "qcow2.backing-file-name")
      }
      guard backingFileOffset <= clusterSize, UInt64(backingFileSize) <= clusterSize - backingFileOffset else {
        throw ImageError(.invalidField, format: f, field: "backing_file_offset", offset: 8,
                         "is \(hex(backingFileOffset)) (+\(backingFileSize) bytes), outside the \(clusterSize)-byte header cluster",
                         finding: "qcow2.backing-file-name")
      }
      guard backingFileOffset >= UInt64(headerLength) else {
        throw ImageError(.invalidField, format: f, field: "backing_file_offset", offset: 8,
                         "is \(hex(backingFileOffset)), inside the \(headerLength)-byte header")
      }
    }
    // The L1 table must be large enough for the virtual size and at most 32 MiB.
    guard UInt64(l1Size) <= QCOW2Limits.maxL1Bytes / 8 else {
      throw ImageError(.limitExceeded, format: f, field: "l1_size", offset: 36,
                       "is \(l1Size) entries; the active L1 table is at most 32 MiB (\(QCOW2Limits.maxL1Bytes / 8) entries)",
                       finding: "qcow2.l1-size")
    }
    let bytesPerL1Entry = l2Entries << UInt64(clusterBits)
    let neededL1 = Checked.ceilDiv(size, bytesPerL1Entry)
    guard neededL1 <= UInt64(l1Size) else {
      throw ImageError(.invalidField, format: f, field: "l1_size", offset: 36,
                       "is \(l1Size) entries; a \(size)-byte disk needs \(neededL1)", finding: "qcow2.l1-size")
    }
    guard size <= UInt64(Int64.max) else {
      throw ImageError(.invalidField, format: f, field: "size", offset: 24, "is \(size), beyond 2^63-1")
    }
    if l1Size > 0, l1TableOffset & (clusterSize - 1) != 0 {
      throw ImageError(.invalidField, format: f, field: "l1_table_offset", offset: 40,
                       "is \(hex(l1TableOffset)), not aligned to the \(clusterSize)-byte cluster", finding: "qcow2.l1-table")
    }
    guard l1TableOffset <= UInt64(Int64.max) - UInt64(l1Size) * 8 else {
      throw ImageError(.invalidField, format: f, field: "l1_table_offset", offset: 40, "is \(hex(l1TableOffset)), beyond 2^63")
    }
    guard refcountTableClusters > 0 else {
      throw ImageError(.invalidField, format: f, field: "refcount_table_clusters", offset: 56,
                       "is 0; every qcow2 image has a refcount table", finding: "qcow2.refcount-table")
    }
    guard UInt64(refcountTableClusters) <= QCOW2Limits.maxRefcountTableBytes >> UInt64(clusterBits) else {
      throw ImageError(.limitExceeded, format: f, field: "refcount_table_clusters", offset: 56,
                       "is \(refcountTableClusters); the refcount table is at most 8 MiB", finding: "qcow2.refcount-table")
    }
    guard refcountTableOffset & (clusterSize - 1) == 0, refcountTableOffset <= UInt64(Int64.max) - refcountTableBytes else {
      throw ImageError(.invalidField, format: f, field: "refcount_table_offset", offset: 48,
                       "is \(hex(refcountTableOffset)), not a cluster-aligned offset", finding: "qcow2.refcount-table")
    }
    guard nbSnapshots <= QCOW2Limits.maxSnapshots else {
      throw ImageError(.limitExceeded, format: f, field: "nb_snapshots", offset: 60,
                       "is \(nbSnapshots); at most \(QCOW2Limits.maxSnapshots)", finding: "qcow2.snapshot-table")
    }
    if nbSnapshots > 0, snapshotsOffset & (clusterSize - 1) != 0 || snapshotsOffset > UInt64(Int64.max) {
      throw ImageError(.invalidField, format: f, field: "snapshots_offset", offset: 64,
                       "is \(hex(snapshotsOffset)), not aligned to the \(clusterSize)-byte cluster", finding: "qcow2.snapshot-table")
    }
  }
}

/// Header extension types (spec, "Header extensions").
enum QCOW2Extension {
  static let end: UInt32 = 0
  static let backingFormat: UInt32 = 0xe279_2aca
  static let featureNameTable: UInt32 = 0x6803_f857
  static let bitmaps: UInt32 = 0x2385_2875
  static let fullDiskEncryption: UInt32 = 0x0537_be77
  static let externalDataFile: UInt32 = 0x4441_5441
}

/// A snapshot table entry (spec, "Snapshots"), big-endian:
///
///     offset size field
///          0    8 l1_table_offset
///          8    4 l1_size
///         12    2 id_str_size
///         14    2 name_size
///         16    4 date_sec
///         20    4 date_nsec
///         24    8 vm_clock_nsec
///         32    4 vm_state_size
///         36    4 extra_data_size
///         40    n extra data: [0] vm_state_size_large u64, [8] disk_size u64, [16] icount u64
///          .    . id string, name, padding to a multiple of 8
struct QCOW2Snapshot: Sendable {
  var entryOffset: UInt64
  var l1TableOffset: UInt64
  var l1Size: UInt32
  var id: String
  var name: String
  var dateSec: UInt32
  var dateNsec: UInt32
  var vmClockNsec: UInt64
  var vmStateSize: UInt64
  var diskSize: UInt64?
  var icount: UInt64?

  var json: JSON {
    var o = JSONObject()
    if let icount, icount != UInt64.max { o.set("icount", icount) }
    o.set("vm-state-size", vmStateSize)
    o.set("date-sec", UInt64(dateSec))
    o.set("date-nsec", UInt64(dateNsec))
    o.set("vm-clock-sec", vmClockNsec / 1_000_000_000)
    o.set("vm-clock-nsec", vmClockNsec % 1_000_000_000)
    o.set("id", id)
    o.set("name", name)
    o.set("l1-table-offset", l1TableOffset)
    o.set("l1-size", UInt64(l1Size))
    o.set("disk-size", diskSize)
    return o.json
  }
}

/// A bitmap directory entry (spec, "Bitmaps"), big-endian:
///
///     offset size field
///          0    8 bitmap_table_offset
///          8    4 bitmap_table_size     entries
///         12    4 flags                 bit 0 in_use, bit 1 auto, bit 2 extra_data_compatible
///         16    1 type                  1: dirty tracking bitmap
///         17    1 granularity_bits      9..31
///         18    2 name_size
///         20    4 extra_data_size
///         24    n extra data, name, padding to a multiple of 8
struct QCOW2Bitmap: Sendable {
  var entryOffset: UInt64
  var tableOffset: UInt64
  var tableSize: UInt32
  var flags: UInt32
  var type: UInt8
  var granularityBits: UInt8
  var name: String

  var json: JSON {
    var o = JSONObject()
    var flagNames: [JSON] = []
    if flags & 1 != 0 { flagNames.append(.string("in-use")) }
    if flags & 2 != 0 { flagNames.append(.string("auto")) }
    o.set("flags", JSON.array(flagNames))
    o.set("name", name)
    o.set("granularity", UInt64(1) << UInt64(granularityBits))
    return o.json
  }
}

/// Reads variable-length records (snapshot table, bitmap directory) through a window of at most
/// `QCOW2Limits.tableWindow` bytes, so a 64 MiB table never needs one large allocation.
struct QCOW2Window {
  let ctx: ProbeContext
  let format: String
  var start: UInt64 = 0
  var data: [UInt8] = []

  init(_ ctx: ProbeContext, format: String) {
    self.ctx = ctx
    self.format = format
  }

  /// Exactly `count` bytes at `offset` (count at most a few hundred KiB), or `.truncated`.
  mutating func reader(at offset: UInt64, count: Int, _ field: String) throws(ImageError) -> ByteReader {
    if offset < start || offset - start > UInt64(data.count) || UInt64(count) > UInt64(data.count) - (offset - start) {
      start = offset
      data = try ctx.read(at: offset, count: max(count, QCOW2Limits.tableWindow))
    }
    let o = Int(offset - start)
    guard data.count - o >= count else {
      throw ImageError.truncated(format, field, at: offset, need: UInt64(count), have: UInt64(data.count - o))
    }
    return ByteReader(Array(data[o..<(o + count)]), base: offset, format: format)
  }
}

/// A decoded qcow2 image: header, extensions and the tables `info` reports.
struct QCOW2Image: Sendable {
  var header: QCOW2Header
  var backingFile: String?
  var backingFormat: String?
  var dataFile: String?
  var dataFileOffset: UInt64?
  /// Full disk encryption header (offset, length) from extension 0x0537be77.
  var cryptoHeader: (offset: UInt64, length: UInt64)?
  /// Bitmaps extension: count, directory size and offset.
  var bitmapsExtension: (count: UInt32, directorySize: UInt64, directoryOffset: UInt64)?
  /// Feature name table: (type, bit) -> name.
  var featureNames: [(type: UInt8, bit: UInt8, name: String)] = []
  var unknownExtensions: [(type: UInt32, length: UInt32, offset: UInt64)] = []
  var snapshots: [QCOW2Snapshot] = []
  /// Snapshot table size with every entry padded to 8 bytes (QEMU's snapshots_size).
  var snapshotTableBytes: UInt64 = 0
  /// Bytes the table occupies in the file: QEMU does not write the last entry's padding.
  var snapshotTableUsed: UInt64 = 0
  var bitmaps: [QCOW2Bitmap] = []
  var luks: LUKSHeader?
  /// Problems found while decoding that do not stop `info` (tables beyond the end, ...).
  var findings: [Finding] = []

  static let format = "qcow2"

  static func open(_ ctx: ProbeContext) throws(ImageError) -> QCOW2Image {
    let head = ctx.headReader(format)
    guard head.count >= 72 else {
      throw ImageError.truncated(format, "header", at: 0, need: 72, have: UInt64(head.count))
    }
    let header = try QCOW2Header.decode(head)
    try header.validate()
    var image = QCOW2Image(header: header)
    try image.readExtensions(ctx)
    // An empty name (size 0) means no backing file, as in QEMU.
    if header.backingFileOffset != 0, header.backingFileSize > 0 {
      let r = try ctx.reader(at: header.backingFileOffset, count: Int(header.backingFileSize), format, "backing file name")
      image.backingFile = Text.utf8(r.bytes)
    }
    try image.checkEncryption()
    image.readSnapshots(ctx)
    image.readBitmaps(ctx)
    image.readLUKS(ctx)
    image.checkTablesInsideFile(fileSize: ctx.size)
    return image
  }

  /// Header extensions follow the header (at header_length, or 72 for version 2) up to the end
  /// of the first cluster (or the backing file name): type u32, length u32, data padded to 8.
  mutating func readExtensions(_ ctx: ProbeContext) throws(ImageError) {
    let f = QCOW2Image.format
    var end = header.clusterSize
    if header.backingFileOffset != 0 { end = min(end, header.backingFileOffset) }
    var offset = UInt64(header.headerLength)
    let cluster = try ctx.reader(at: 0, count: Int(min(end, ctx.size)), f, "header extensions")
    while offset < end {
      guard end - offset >= 8, offset + 8 <= UInt64(cluster.count) else {
        throw ImageError.truncated(f, "header extension", at: offset, need: 8, have: UInt64(cluster.count) - min(offset, UInt64(cluster.count)))
      }
      let o = Int(offset)
      let type = try cluster.u32BE(at: o, "header extension type")
      let length = try cluster.u32BE(at: o + 4, "header extension length")
      if type == QCOW2Extension.end { break }
      let dataStart = offset + 8
      let padded = (UInt64(length) + 7) & ~7
      guard padded <= end - dataStart else {
        throw ImageError(.invalidField, format: f, field: "header extension length", offset: offset + 4,
                         "is \(length) (extension \(hex(type))), past the end of the header area at \(hex(end))",
                         finding: "qcow2.header-extension")
      }
      let data = try cluster.bytes(at: Int(dataStart), Int(length), "header extension data")
      let d = ByteReader(Array(data), base: dataStart, format: f)
      switch type {
      case QCOW2Extension.backingFormat:
        backingFormat = Text.utf8(data)
      case QCOW2Extension.featureNameTable:
        var i = 0
        while i + 48 <= d.count {
          let t = try d.u8(at: i, "feature type")
          let bit = try d.u8(at: i + 1, "feature bit")
          featureNames.append((t, bit, Text.utf8(try d.bytes(at: i + 2, 46, "feature name"))))
          i += 48
        }
      case QCOW2Extension.bitmaps:
        guard length >= 24 else {
          throw ImageError(.invalidField, format: f, field: "bitmaps extension length", offset: offset + 4,
                           "is \(length); the extension has 24 bytes", finding: "qcow2.header-extension")
        }
        bitmapsExtension = (try d.u32BE(at: 0, "nb_bitmaps"), try d.u64BE(at: 8, "bitmap_directory_size"),
                            try d.u64BE(at: 16, "bitmap_directory_offset"))
      case QCOW2Extension.fullDiskEncryption:
        guard length == 16 else {
          throw ImageError(.invalidField, format: f, field: "full disk encryption extension length", offset: offset + 4,
                           "is \(length); the extension has 16 bytes", finding: "qcow2.header-extension")
        }
        cryptoHeader = (try d.u64BE(at: 0, "crypto header offset"), try d.u64BE(at: 8, "crypto header length"))
      case QCOW2Extension.externalDataFile:
        guard length <= QCOW2Limits.maxDataFileName else {
          throw ImageError(.limitExceeded, format: f, field: "external data file name", offset: offset + 4,
                           "is \(length) bytes; at most 1023")
        }
        dataFile = Text.utf8(data)
        dataFileOffset = dataStart
      default:
        unknownExtensions.append((type, length, offset))
      }
      offset = dataStart + padded
    }
    // Like QEMU, the area may also end without an end marker.
  }

  func checkEncryption() throws(ImageError) {
    let f = QCOW2Image.format
    if header.cryptMethod == 2 {
      guard let c = cryptoHeader else {
        throw ImageError(.invalidField, format: f, field: "crypt_method", offset: 32,
                         "is 2 (LUKS) but the full disk encryption header extension is missing")
      }
      guard c.offset & (header.clusterSize - 1) == 0, c.offset != 0, c.length > 0, c.offset <= UInt64(Int64.max) - c.length else {
        throw ImageError(.invalidField, format: f, field: "crypto header offset", offset: nil,
                         "is \(hex(c.offset)) (\(c.length) bytes); it must be a non-zero cluster-aligned range")
      }
    }
  }

  /// The snapshot table: `nb_snapshots` variable-length entries, each decoded and bounded.
  mutating func readSnapshots(_ ctx: ProbeContext) {
    guard header.nbSnapshots > 0 else { return }
    let f = QCOW2Image.format
    var window = QCOW2Window(ctx, format: f)
    var offset = header.snapshotsOffset
    do throws(ImageError) {
      for i in 0..<header.nbSnapshots {
        let fixed = try window.reader(at: offset, count: 40, "snapshot \(i)")
        var r = fixed
        let l1Offset = try r.u64BE("snapshot l1_table_offset")
        let l1Size = try r.u32BE("snapshot l1_size")
        let idSize = try r.u16BE("id_str_size")
        let nameSize = try r.u16BE("name_size")
        let dateSec = try r.u32BE("date_sec")
        let dateNsec = try r.u32BE("date_nsec")
        let vmClock = try r.u64BE("vm_clock_nsec")
        let vmState = try r.u32BE("vm_state_size")
        let extraSize = try r.u32BE("extra_data_size")
        guard extraSize <= QCOW2Limits.maxSnapshotExtraData else {
          throw ImageError(.limitExceeded, format: f, field: "snapshot \(i) extra_data_size", offset: offset + 36,
                           "is \(extraSize); at most \(QCOW2Limits.maxSnapshotExtraData)", finding: "qcow2.snapshot-table")
        }
        let varSize = Int(extraSize) + Int(idSize) + Int(nameSize)
        let rest = try window.reader(at: offset + 40, count: varSize, "snapshot \(i) data")
        var snap = QCOW2Snapshot(entryOffset: offset, l1TableOffset: l1Offset, l1Size: l1Size, id: "", name: "",
                                 dateSec: dateSec, dateNsec: dateNsec, vmClockNsec: vmClock, vmStateSize: UInt64(vmState))
        if extraSize >= 8 { snap.vmStateSize = try rest.u64BE(at: 0, "vm_state_size_large") }
        if extraSize >= 16 { snap.diskSize = try rest.u64BE(at: 8, "disk_size") }
        if extraSize >= 24 { snap.icount = try rest.u64BE(at: 16, "icount") }
        snap.id = Text.utf8(try rest.bytes(at: Int(extraSize), Int(idSize), "snapshot id"))
        snap.name = Text.utf8(try rest.bytes(at: Int(extraSize) + Int(idSize), Int(nameSize), "snapshot name"))
        snapshots.append(snap)
        let entry = (40 + UInt64(varSize) + 7) & ~7
        snapshotTableUsed = snapshotTableBytes + 40 + UInt64(varSize)
        offset += entry
        snapshotTableBytes += entry
        guard snapshotTableBytes <= QCOW2Limits.maxSnapshotTableBytes else {
          throw ImageError(.limitExceeded, format: f, field: "snapshot table", offset: header.snapshotsOffset,
                           "is larger than 64 MiB", finding: "qcow2.snapshot-table")
        }
        if snap.l1Size > 0, snap.l1TableOffset & (header.clusterSize - 1) != 0 {
          findings.append(Finding("qcow2.snapshot-table", .corrupt, field: "snapshot \(i) l1_table_offset", offset: snap.entryOffset,
                                  "snapshot \(i) has an L1 table at \(hex(snap.l1TableOffset)), not cluster aligned"))
        }
        if UInt64(snap.l1Size) > QCOW2Limits.maxL1Bytes / 8 {
          findings.append(Finding("qcow2.snapshot-table", .corrupt, field: "snapshot \(i) l1_size", offset: snap.entryOffset + 8,
                                  "snapshot \(i) declares \(snap.l1Size) L1 entries, more than the 32 MiB limit"))
        }
      }
    } catch {
      findings.append(Finding(corrupt: error, id: error.kind == .needsSeekable ? "qcow2.needs-seekable" : "qcow2.snapshot-table"))
    }
  }

  /// The bitmap directory, when the bitmaps autoclear bit says the extension is current.
  mutating func readBitmaps(_ ctx: ProbeContext) {
    guard let ext = bitmapsExtension, header.autoclearFeatures & QCOW2Feature.autoclearBitmaps != 0, ext.count > 0 else { return }
    let f = QCOW2Image.format
    do throws(ImageError) {
      guard ext.count <= QCOW2Limits.maxBitmaps else {
        throw ImageError(.limitExceeded, format: f, field: "nb_bitmaps", offset: nil,
                         "is \(ext.count); at most \(QCOW2Limits.maxBitmaps)", finding: "qcow2.bitmaps")
      }
      guard ext.directorySize <= QCOW2Limits.maxBitmapDirectoryBytes else {
        throw ImageError(.limitExceeded, format: f, field: "bitmap_directory_size", offset: nil,
                         "is \(ext.directorySize); at most 64 MiB", finding: "qcow2.bitmaps")
      }
      guard ext.directoryOffset & (header.clusterSize - 1) == 0, ext.directoryOffset <= UInt64(Int64.max) - ext.directorySize else {
        throw ImageError(.invalidField, format: f, field: "bitmap_directory_offset", offset: nil,
                         "is \(hex(ext.directoryOffset)), not cluster aligned", finding: "qcow2.bitmaps")
      }
      var window = QCOW2Window(ctx, format: f)
      var offset = ext.directoryOffset
      let end = ext.directoryOffset + ext.directorySize
      for i in 0..<ext.count {
        guard end >= offset, end - offset >= 24 else {
          throw ImageError(.invalidField, format: f, field: "bitmap directory", offset: offset,
                           "ends before bitmap \(i) of \(ext.count)", finding: "qcow2.bitmaps")
        }
        let r = try window.reader(at: offset, count: 24, "bitmap \(i)")
        let nameSize = try r.u16BE(at: 18, "bitmap name_size")
        let extra = try r.u32BE(at: 20, "bitmap extra_data_size")
        guard nameSize <= QCOW2Limits.maxBitmapName, extra <= 1 << 20 else {
          throw ImageError(.limitExceeded, format: f, field: "bitmap \(i) name_size", offset: offset + 18,
                           "is \(nameSize) (extra data \(extra)); names are at most 1023 bytes", finding: "qcow2.bitmaps")
        }
        let entry = (24 + UInt64(extra) + UInt64(nameSize) + 7) & ~7
        guard entry <= end - offset else {
          throw ImageError(.invalidField, format: f, field: "bitmap directory", offset: offset,
                           "bitmap \(i) runs past the directory end", finding: "qcow2.bitmaps")
        }
        let name = try window.reader(at: offset + 24 + UInt64(extra), count: Int(nameSize), "bitmap name")
        let bm = QCOW2Bitmap(entryOffset: offset, tableOffset: try r.u64BE(at: 0, "bitmap_table_offset"),
                             tableSize: try r.u32BE(at: 8, "bitmap_table_size"), flags: try r.u32BE(at: 12, "bitmap flags"),
                             type: try r.u8(at: 16, "bitmap type"), granularityBits: try r.u8(at: 17, "granularity_bits"),
                             name: Text.utf8(name.bytes))
        // A bitmap covers the virtual disk: ceil(size / granularity) bits in clusters of bits.
        let expectedTable = QCOW2Limits.bitmapGranularityBits.contains(bm.granularityBits)
          ? Checked.ceilDiv(Checked.ceilDiv(header.size, UInt64(1) << UInt64(bm.granularityBits)), header.clusterSize * 8) : 0
        if !QCOW2Limits.bitmapGranularityBits.contains(bm.granularityBits) || bm.type != 1
          || bm.tableSize > QCOW2Limits.maxBitmapTableEntries || bm.tableOffset & (header.clusterSize - 1) != 0
          || UInt64(bm.tableSize) != expectedTable
        {
          findings.append(Finding("qcow2.bitmaps", .corrupt, field: "bitmap \(i)", offset: offset,
                                  "bitmap '\(bm.name)' has type \(bm.type), granularity bits \(bm.granularityBits), table of \(bm.tableSize) entries (the disk needs \(expectedTable)) at \(hex(bm.tableOffset)): outside the spec"))
        }
        bitmaps.append(bm)
        offset += entry
      }
    } catch {
      findings.append(Finding(corrupt: error, id: error.kind == .needsSeekable ? "qcow2.needs-seekable" : "qcow2.bitmaps"))
    }
  }

  mutating func readLUKS(_ ctx: ProbeContext) {
    guard header.cryptMethod == 2, let c = cryptoHeader else { return }
    do throws(ImageError) {
      let r = try ctx.reader(at: c.offset, count: Int(min(c.length, 4096)), "qcow2", "LUKS header")
      luks = try LUKSHeader.decode(r, format: "qcow2")
    } catch {
      findings.append(Finding(corrupt: error, id: error.kind == .needsSeekable ? "qcow2.needs-seekable" : "qcow2.crypto-header"))
    }
  }

  /// Tables named by the header must lie in the file: a cut-off download is corrupt, not zeros.
  mutating func checkTablesInsideFile(fileSize: UInt64) {
    func check(_ what: String, _ field: String, _ at: UInt64, _ offset: UInt64, _ bytes: UInt64) -> Finding? {
      guard bytes > 0 else { return nil }
      if offset > fileSize || bytes > fileSize - offset {
        return Finding("qcow2.truncated", .corrupt, field: field, offset: at,
                       "the \(what) at \(hex(offset)) (\(bytes) bytes) ends beyond the end of the file (\(fileSize) bytes)")
      }
      return nil
    }
    var list: [Finding?] = [
      check("L1 table", "l1_table_offset", 40, header.l1TableOffset, UInt64(header.l1Size) * 8),
      check("refcount table", "refcount_table_offset", 48, header.refcountTableOffset, header.refcountTableBytes),
      check("snapshot table", "snapshots_offset", 64, header.snapshotsOffset, snapshotTableUsed),
    ]
    if let c = cryptoHeader { list.append(check("LUKS header", "crypto header offset", 0, c.offset, c.length)) }
    if let b = bitmapsExtension, header.autoclearFeatures & QCOW2Feature.autoclearBitmaps != 0 {
      list.append(check("bitmap directory", "bitmap_directory_offset", 0, b.directoryOffset, b.directorySize))
    }
    findings += list.compactMap { $0 }
  }

  var subformat: String { header.version == 2 ? "v2" : "v3" }

  /// Names of incompatible feature bits set that this decoder does not know.
  var unknownIncompatibleBits: [String] {
    var out: [String] = []
    let unknown = header.incompatibleFeatures & ~QCOW2Feature.knownIncompatible
    for bit in 0..<64 where unknown & (UInt64(1) << UInt64(bit)) != 0 {
      if let n = featureNames.first(where: { $0.type == 0 && Int($0.bit) == bit }) {
        out.append("bit \(bit) (\(n.name))")
      } else {
        out.append("bit \(bit)")
      }
    }
    return out
  }

  func info(fileSize: UInt64) -> ImageInfo {
    let h = header
    var info = ImageInfo(probe: QCOW2Probe.id, qemuFormat: "qcow2", diskFormat: .qcow2, subformat: subformat,
                         virtualSize: h.size)
    info.clusterSize = h.clusterSize
    info.dirty = h.incompatibleFeatures & QCOW2Feature.dirty != 0
    info.encrypted = h.cryptMethod != 0
    info.backingFilename = backingFile
    info.backingFormat = backingFile == nil ? nil : backingFormat

    var fs = JSONObject()
    fs.set("compat", h.version == 2 ? "0.10" : "1.1")
    fs.set("compression-type", h.compressionType == 1 ? "zstd" : "zlib")
    if h.version == 3 { fs.set("lazy-refcounts", h.compatibleFeatures & QCOW2Feature.lazyRefcounts != 0) }
    if !bitmaps.isEmpty { fs.set("bitmaps", JSON.array(bitmaps.map(\.json))) }
    fs.set("refcount-bits", h.refcountBits)
    if let dataFile { fs.set("data-file", dataFile) }
    if h.hasDataFile { fs.set("data-file-raw", h.autoclearFeatures & QCOW2Feature.autoclearRawData != 0) }
    if h.cryptMethod == 1 {
      var e = JSONObject()
      e.set("format", "aes")
      fs.set("encrypt", e.json)
    } else if h.cryptMethod == 2 {
      var e = luks?.qemuJSON(format: "luks") ?? JSONObject()
      e.set("format", "luks")
      fs.set("encrypt", e.json)
    }
    if h.version == 3 {
      fs.set("corrupt", h.incompatibleFeatures & QCOW2Feature.corrupt != 0)
      fs.set("extended-l2", h.extendedL2)
    }
    // imgtool's own keys.
    if !snapshots.isEmpty {
      fs.set("snapshots", JSON.array(snapshots.prefix(QCOW2Limits.maxReportedSnapshots).map(\.json)))
    }
    fs.set("nb-snapshots", UInt64(h.nbSnapshots))
    fs.set("incompatible-features", h.incompatibleFeatures)
    fs.set("compatible-features", h.compatibleFeatures)
    fs.set("autoclear-features", h.autoclearFeatures)
    fs.set("l1-size", UInt64(h.l1Size))
    fs.set("l1-table-offset", h.l1TableOffset)
    fs.set("refcount-table-offset", h.refcountTableOffset)
    fs.set("refcount-table-clusters", UInt64(h.refcountTableClusters))
    if !unknownExtensions.isEmpty {
      fs.set("unknown-extensions", JSON.array(unknownExtensions.prefix(QCOW2Limits.maxReportedExtensions).map { e in
        var o = JSONObject()
        o.set("type", hex(e.type))
        o.set("length", UInt64(e.length))
        o.set("offset", e.offset)
        return o.json
      }))
    }
    info.formatSpecific = fs

    if let backingFile {
      info.externalReferences.append(ExternalReference(kind: "backing-file", name: backingFile, offset: h.backingFileOffset))
      info.findings.append(Finding("qcow2.backing-file", .unsafe, field: "backing_file_offset", offset: 8,
                                   "the image reads unallocated clusters from backing file '\(backingFile)'" + (backingFormat.map { " (format \($0))" } ?? "") + ", outside the image",
                                   fix: "qemu-img convert -O qcow2 to a standalone image, or qemu-img rebase -b ''"))
    }
    // Every name the image holds is listed, even one QEMU would not use.
    if let dataFile { info.externalReferences.append(ExternalReference(kind: "data-file", name: dataFile, offset: dataFileOffset)) }
    if dataFile != nil, !h.hasDataFile {
      info.notes.append("an external data file name is present but the external data file feature bit is clear; QEMU does not use it")
    }
    if h.hasDataFile {
      let name = dataFile ?? ""
      info.findings.append(Finding("qcow2.data-file", .unsafe, field: "incompatible_features", offset: 72,
                                   name.isEmpty ? "guest data lives in an external data file the image does not name; it is not in this file"
                                                : "guest data lives in external data file '\(name)', outside the image",
                                   fix: "qemu-img convert -O qcow2 without data_file"))
    }
    if h.cryptMethod != 0 {
      info.findings.append(Finding("qcow2.encrypted", .unsafe, field: "crypt_method", offset: 32,
                                   "the guest data is encrypted (\(h.cryptMethod == 1 ? "legacy AES-CBC" : "LUKS")); its content cannot be inspected or verified without the key"))
    }
    if h.cryptMethod == 1 {
      info.notes.append("legacy qcow2 AES encryption is weak (no integrity, predictable IVs) and QEMU no longer opens it for writing")
    }
    let unknown = unknownIncompatibleBits
    if !unknown.isEmpty {
      info.findings.append(Finding("qcow2.unknown-incompatible-features", .unsafe, field: "incompatible_features", offset: 72,
                                   "incompatible feature \(unknown.joined(separator: ", ")) is unknown; a reader that does not implement it must not open the image"))
    }
    if h.incompatibleFeatures & QCOW2Feature.corrupt != 0 {
      info.findings.append(Finding("qcow2.corrupt-bit", .corrupt, field: "incompatible_features", offset: 72,
                                   "QEMU marked the image corrupt (incompatible feature bit 1): its metadata failed a consistency check",
                                   fix: "qemu-img check -r all, then verify the content"))
    }
    if h.incompatibleFeatures & QCOW2Feature.dirty != 0 {
      info.findings.append(Finding("qcow2.dirty", .warning, field: "incompatible_features", offset: 72,
                                   "the dirty bit is set: the image was not closed cleanly and its refcounts may be stale (lazy refcounts)",
                                   fix: "qemu-img check -r all"))
    }
    if !unknownExtensions.isEmpty {
      info.notes.append("unknown header extensions: " + unknownExtensions.prefix(8).map { "\(hex($0.type)) (\($0.length) bytes)" }.joined(separator: ", "))
    }
    if backingFile == nil, backingFormat != nil {
      info.notes.append("a backing format extension is present without a backing file")
    }
    info.findings += findings
    return info
  }
}
