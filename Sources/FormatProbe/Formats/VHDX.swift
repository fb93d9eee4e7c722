/// VHDX: Microsoft Hyper-V virtual hard disk v2, qemu driver `vhdx`.
///
/// Reference: [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format", Microsoft Open Specifications
/// (v1.0 and later revisions).
///
/// Layout (all integers little-endian, GUIDs in Microsoft mixed-endian order):
/// * 0 KiB:   file type identifier "vhdxfile" + creator (UTF-16LE, 512 bytes)
/// * 64 KiB, 128 KiB: two headers ("head", CRC-32C over 4 KiB); the valid one with the higher
///   sequence number is current. It names the log (guid, offset, length).
/// * 192 KiB, 256 KiB: two region tables ("regi", CRC-32C over 64 KiB) locating the BAT and the
///   metadata region (1 MiB aligned).
/// * metadata region: table ("metadata") of items: file parameters, virtual disk size, page 83
///   data, logical/physical sector size, parent locator.
/// * BAT: u64 entries, state in bits 0-2, file offset in MiB in bits 20-63; after every
///   `chunk ratio` payload entries comes one sector bitmap entry.
public enum VHDXProbe: DeepCheckable {
  public static let id = "vhdx"
  public static let role = ProbeRole.image
  static let format = "vhdx"

  public enum Limits {
    /// Header copies at 64 KiB and 128 KiB, 4 KiB each (MS-VHDX 2.2.2).
    public static let headerOffsets: [UInt64] = [64 << 10, 128 << 10]
    public static let headerSize = 4 << 10
    /// Region table copies at 192 KiB and 256 KiB, 64 KiB each (MS-VHDX 2.2.3).
    public static let regionTableOffsets: [UInt64] = [192 << 10, 256 << 10]
    public static let regionTableSize = 64 << 10
    /// At most 2047 region table entries: the 64 KiB table minus its 16-byte header holds 2047
    /// entries of 32 bytes (MS-VHDX 2.2.3.1, "EntryCount ... must be less than or equal to 2047").
    public static let maxRegionEntries: UInt32 = 2047
    /// The metadata table is 64 KiB with at most 2047 entries (MS-VHDX 2.6.1.1).
    public static let metadataTableSize = 64 << 10
    public static let maxMetadataEntries: UInt16 = 2047
    /// A metadata item is at most 1 MiB (MS-VHDX 2.6.1.2, "Length ... less than or equal to 1 MB").
    public static let maxMetadataItem: UInt32 = 1 << 20
    /// Regions, the log and payload blocks are placed on 1 MiB boundaries (MS-VHDX 2.2.3.2, 2.5).
    public static let alignment: UInt64 = 1 << 20
    /// Block size: a power of two from 1 MiB to 256 MiB (MS-VHDX 2.6.2.1; qemu vhdx.c the same).
    public static let minBlockSize: UInt32 = 1 << 20
    public static let maxBlockSize: UInt32 = 256 << 20
    /// Virtual disk size: at most 64 TiB (MS-VHDX 2.6.2.2; qemu VHDX_MAX_IMAGE_SIZE).
    public static let maxVirtualSize: UInt64 = 64 << 40
    /// Log entries are 4 KiB aligned; `info` scans at most this much of the log for a valid entry
    /// (logs are 1 MiB by default; qemu and Hyper-V create 1 MiB to a few MiB).
    public static let maxLogScan: UInt64 = 64 << 20
    /// At most this many candidate log entries have their CRC verified: a crafted log of
    /// "loge" signatures cannot make the scan quadratic.
    public static let maxLogCandidates = 64
    /// Log entries larger than this are not verified (no sane entry is; qemu caps a log at 4 GiB
    /// but writes entries of a few blocks).
    public static let maxLogEntry: UInt32 = 16 << 20
    /// Parent locator: at most this many key/value pairs (each needs 12 bytes of a <= 1 MiB item).
    public static let maxLocatorEntries: UInt16 = 1024
    /// Deep check lists at most this many findings (all are counted in `corruptions`).
    public static let maxListedFindings = 50
    /// Deep check reads the BAT in pieces of this size.
    public static let batChunkBytes = 4 << 20
    /// Deep check sorts at most this many allocated block offsets (8 bytes each: 64 MiB) for
    /// overlap detection; 2^23 blocks of the smallest size (1 MiB) cover 8 TiB.
    public static let maxTrackedBlocks = 1 << 23
  }

  // MARK: GUIDs (MS-VHDX 2.2.3.2, 2.6.2)

  static let batGUID = "2dc27766-f623-4200-9d64-115e9bfd4a08"
  static let metadataGUID = "8b7ca206-4790-4b9a-b8fe-575f050f886e"
  static let fileParametersGUID = "caa16737-fa36-4d43-b3b6-33f0aa44e76b"
  static let virtualDiskSizeGUID = "2fa54224-cd1b-4876-b211-5dbed83bf4b8"
  static let page83GUID = "beca12ab-b2e6-4523-93ef-c309e000c746"
  static let logicalSectorGUID = "8141bf1d-a96f-4709-ba47-f233a8faab5f"
  static let physicalSectorGUID = "cda348c7-445d-4471-9cc9-e9885251c556"
  static let parentLocatorGUID = "a8d35f2d-b30b-454d-abf7-d3d84834ab0c"
  /// Locator type of a VHDX parent (MS-VHDX 2.6.2.6).
  static let vhdxParentLocatorType = "b04aefb7-d19e-4a81-b789-25b8e9445913"

  /// Header (MS-VHDX 2.2.2.1), 4 KiB.
  ///
  /// | off | size | field |
  /// |---|---|---|
  /// | 0 | 4 | signature "head" |
  /// | 4 | 4 | checksum: CRC-32C over the 4 KiB with this field zeroed |
  /// | 8 | 8 | sequence number |
  /// | 16 | 16 | file write guid |
  /// | 32 | 16 | data write guid |
  /// | 48 | 16 | log guid (zero: the log is empty) |
  /// | 64 | 2 | log version (0) |
  /// | 66 | 2 | version (1) |
  /// | 68 | 4 | log length (multiple of 1 MiB) |
  /// | 72 | 8 | log offset (1 MiB aligned) |
  /// | 80 | 4016 | reserved |
  struct Header {
    var index: Int
    var offset: UInt64
    var checksum: UInt32 = 0
    var computed: UInt32 = 0
    var sequence: UInt64 = 0
    var fileWriteGUID = ""
    var dataWriteGUID = ""
    var logGUID = ""
    var logGUIDRaw: [UInt8] = []
    var logGUIDIsZero = true
    var logVersion: UInt16 = 0
    var version: UInt16 = 0
    var logLength: UInt32 = 0
    var logOffset: UInt64 = 0
    /// The 4 KiB as read (two valid copies with one sequence number must be identical).
    var raw: [UInt8] = []
    /// Why the copy is unusable, or nil when it is valid.
    var problem: String?
    var problemOffset: UInt64

    static func decode(_ ctx: ProbeContext, index: Int, at offset: UInt64) -> Header {
      var h = Header(index: index, offset: offset, problemOffset: offset)
      do {
        var r = try ctx.reader(at: offset, count: Limits.headerSize, format, "header \(index + 1)")
        guard r.matches(Array("head".utf8), at: 0) else {
          h.problem = "signature at \(hex(offset)) is not \"head\""
          return h
        }
        try r.skip(4, "signature")
        h.checksum = try r.u32LE("header checksum")
        h.computed = CRC32C.checksum(r.bytes[...], zeroingFieldAt: 4)
        h.raw = Array(r.bytes)
        h.sequence = try r.u64LE("sequence number")
        h.fileWriteGUID = try r.guidMixedEndian("file write guid")
        h.dataWriteGUID = try r.guidMixedEndian("data write guid")
        let log = try r.bytes(16, "log guid")
        h.logGUIDRaw = Array(log)
        h.logGUID = GUID.mixedEndian(log)
        h.logGUIDIsZero = GUID.isZero(log)
        h.logVersion = try r.u16LE("log version")
        h.version = try r.u16LE("version")
        h.logLength = try r.u32LE("log length")
        h.logOffset = try r.u64LE("log offset")
        if h.checksum != h.computed {
          h.problem = "checksum at \(hex(offset + 4)) is \(hex(h.checksum)), computed \(hex(h.computed))"
          h.problemOffset = offset + 4
        }
      } catch {
        h.problem = error.description
      }
      return h
    }
  }

  /// Region table entry (MS-VHDX 2.2.3.2), 32 bytes: guid, file offset u64, length u32, bit 0 of
  /// the last u32 = required.
  struct RegionEntry: Equatable {
    var guid: String
    var fileOffset: UInt64
    var length: UInt32
    var required: Bool
    var entryOffset: UInt64
    var end: UInt64 { fileOffset &+ UInt64(length) }
  }

  /// Region table (MS-VHDX 2.2.3.1): header "regi", checksum (CRC-32C over 64 KiB), entry count,
  /// reserved; then the entries.
  struct RegionTable {
    var index: Int
    var offset: UInt64
    var checksum: UInt32 = 0
    var computed: UInt32 = 0
    var entries: [RegionEntry] = []
    var problem: String?
    var problemOffset: UInt64

    static func decode(_ ctx: ProbeContext, index: Int, at offset: UInt64) -> RegionTable {
      var t = RegionTable(index: index, offset: offset, problemOffset: offset)
      do {
        var r = try ctx.reader(at: offset, count: Limits.regionTableSize, format, "region table \(index + 1)")
        guard r.matches(Array("regi".utf8), at: 0) else {
          t.problem = "signature at \(hex(offset)) is not \"regi\""
          return t
        }
        try r.skip(4, "signature")
        t.checksum = try r.u32LE("region table checksum")
        t.computed = CRC32C.checksum(r.bytes[...], zeroingFieldAt: 4)
        if t.checksum != t.computed {
          t.problem = "checksum at \(hex(offset + 4)) is \(hex(t.checksum)), computed \(hex(t.computed))"
          t.problemOffset = offset + 4
          return t
        }
        let count = try r.u32LE("entry count")
        guard count <= Limits.maxRegionEntries else {
          t.problem = "entry count at \(hex(offset + 8)) is \(count), limit \(Limits.maxRegionEntries)"
          t.problemOffset = offset + 8
          return t
        }
        try r.skip(4, "reserved")
        for _ in 0..<Int(count) {
          let at = r.offset
          let guid = try r.guidMixedEndian("region guid")
          let fileOffset = try r.u64LE("region file offset")
          let length = try r.u32LE("region length")
          let flags = try r.u32LE("region required")
          t.entries.append(RegionEntry(guid: guid, fileOffset: fileOffset, length: length, required: flags & 1 != 0,
                                       entryOffset: at))
        }
      } catch {
        t.problem = error.description
      }
      return t
    }
  }

  /// Metadata table entry (MS-VHDX 2.6.1.2), 32 bytes: item id guid, offset u32 (from the start
  /// of the metadata region, >= 64 KiB), length u32, flags u32 (bit 0 user, bit 1 virtual disk,
  /// bit 2 required), reserved u32.
  struct MetadataEntry {
    var itemID: String
    var offset: UInt32
    var length: UInt32
    var isUser: Bool
    var isRequired: Bool
    var entryOffset: UInt64
  }

  /// One key/value pair of the parent locator (MS-VHDX 2.6.2.6).
  struct LocatorPair {
    var key: String
    var value: String
    var offset: UInt64
  }

  /// Everything `info` decodes; deep check starts from it.
  struct Parsed {
    var headers: [Header]
    var current: Header
    var regions: [RegionEntry]
    var bat: RegionEntry
    var metadata: RegionEntry
    var blockSize: UInt32
    var leaveBlockAllocated: Bool
    var hasParent: Bool
    var virtualSize: UInt64
    var logicalSectorSize: UInt32
    var physicalSectorSize: UInt32
    var chunkRatio: UInt64
    var dataBlocks: UInt64
    var batEntries: UInt64
    var info: ImageInfo
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    try parse(ctx)?.info
  }

  static func parse(_ ctx: ProbeContext) throws(ImageError) -> Parsed? {
    var head = ctx.headReader(format)
    guard head.matches(Array("vhdxfile".utf8), at: 0) else { return nil }
    try head.skip(8, "file type identifier signature")
    let creator = Text.utf16LE(try head.bytes(512, "creator"))
    var info = ImageInfo(probe: id, qemuFormat: "vhdx", diskFormat: .vhdx)
    var fs = JSONObject()
    fs.set("creator", creator)

    // Headers: the valid copy with the higher sequence number is current (MS-VHDX 2.2.2).
    let headers = Limits.headerOffsets.enumerated().map { Header.decode(ctx, index: $0.offset, at: $0.element) }
    let valid = headers.filter { $0.problem == nil }
    guard let current = valid.max(by: { $0.sequence < $1.sequence }) else {
      throw ImageError(.invalidField, format: format, field: "header", offset: headers[0].problemOffset,
                       "both copies are invalid: header 1 \(headers[0].problem ?? ""); header 2 \(headers[1].problem ?? "")",
                       finding: "vhdx.header-checksum")
    }
    // Two valid copies with one sequence number name no current header unless they are the same
    // bytes (Disk2VHD writes such twins); qemu refuses the image, other readers pick either.
    if valid.count == 2, valid[0].sequence == valid[1].sequence, valid[0].raw != valid[1].raw {
      throw ImageError(.invalidField, format: format, field: "sequence number", offset: valid[1].offset + 8,
                       "is \(valid[1].sequence) in both valid headers, which differ: neither is current",
                       finding: "vhdx.header-conflict")
    }
    for h in headers where h.problem != nil {
      info.findings.append(Finding("vhdx.header-checksum", .corrupt, field: "header \(h.index + 1)", offset: h.problemOffset,
                                   "vhdx: header \(h.index + 1) \(h.problem ?? ""); the other copy is used"))
    }
    guard current.version == 1 else {
      throw ImageError(.unsupported, format: format, field: "version", offset: current.offset + 66,
                       "is \(current.version), only version 1 is defined")
    }
    fs.set("header-sequence", current.sequence)
    fs.set("current-header", UInt64(current.index + 1))
    fs.set("headers", JSON.array(headers.map { h in
      var o = JSONObject()
      o.set("offset", h.offset)
      o.set("valid", h.problem == nil)
      if h.problem == nil { o.set("sequence", h.sequence) }
      return o.json
    }))
    fs.set("version", UInt64(current.version))
    fs.set("file-write-guid", current.fileWriteGUID)
    fs.set("data-write-guid", current.dataWriteGUID)
    fs.set("log-guid", current.logGUID)
    fs.set("log-version", UInt64(current.logVersion))
    fs.set("log-offset", current.logOffset)
    fs.set("log-length", UInt64(current.logLength))

    // Log placement.
    let logStart = current.logOffset
    let logEnd = current.logOffset &+ UInt64(current.logLength)
    let logOK = current.logOffset % Limits.alignment == 0 && UInt64(current.logLength) % Limits.alignment == 0
      && current.logOffset >= Limits.alignment && logEnd >= logStart && logEnd <= ctx.size
    if !logOK, current.logLength != 0 || !current.logGUIDIsZero {
      info.findings.append(Finding("vhdx.log-range", .corrupt, field: "log offset", offset: current.offset + 68,
                                   "vhdx: log at \(hex(current.logOffset)) of \(current.logLength) bytes is not 1 MiB aligned, overlaps the headers, or lies beyond the end of the file (\(ctx.size) bytes)"))
    }

    // Region tables: the first valid copy is used; both must agree.
    let tables = Limits.regionTableOffsets.enumerated().map { RegionTable.decode(ctx, index: $0.offset, at: $0.element) }
    guard let table = tables.first(where: { $0.problem == nil }) else {
      throw ImageError(.invalidField, format: format, field: "region table", offset: tables[0].problemOffset,
                       "both copies are invalid: region table 1 \(tables[0].problem ?? ""); region table 2 \(tables[1].problem ?? "")",
                       finding: "vhdx.region-checksum")
    }
    for t in tables where t.problem != nil {
      info.findings.append(Finding("vhdx.region-checksum", .corrupt, field: "region table \(t.index + 1)",
                                   offset: t.problemOffset,
                                   "vhdx: region table \(t.index + 1) \(t.problem ?? ""); the other copy is used"))
    }
    if tables.allSatisfy({ $0.problem == nil }),
       tables[0].entries.map({ [$0.guid, "\($0.fileOffset)", "\($0.length)"] }) != tables[1].entries.map({ [$0.guid, "\($0.fileOffset)", "\($0.length)"] })
    {
      info.findings.append(Finding("vhdx.region-mismatch", .corrupt, field: "region table 2", offset: tables[1].offset,
                                   "vhdx: the two region tables describe different regions; the first is used"))
    }
    var bat: RegionEntry?
    var metadataRegion: RegionEntry?
    for e in table.entries {
      let known = e.guid == batGUID || e.guid == metadataGUID
      if e.guid == batGUID || e.guid == metadataGUID {
        guard (e.guid == batGUID ? bat : metadataRegion) == nil else {
          throw ImageError(.invalidField, format: format, field: "region table entry", offset: e.entryOffset,
                           "repeats region \(e.guid)")
        }
        if e.guid == batGUID { bat = e } else { metadataRegion = e }
      } else if e.required {
        info.findings.append(Finding("vhdx.unknown-region", .unsafe, field: "region table entry", offset: e.entryOffset,
                                     "vhdx: required region \(e.guid) at \(hex(e.entryOffset)) is not defined by the specification: its meaning cannot be verified (qemu refuses the image)"))
      }
      if e.fileOffset % Limits.alignment != 0 || UInt64(e.length) % Limits.alignment != 0 || e.length == 0
        || e.fileOffset < Limits.alignment || e.fileOffset > ctx.size || UInt64(e.length) > ctx.size - e.fileOffset
      {
        let name = e.guid == batGUID ? "BAT" : e.guid == metadataGUID ? "metadata" : e.guid
        info.findings.append(Finding("vhdx.region-range", .corrupt, field: "region \(name)", offset: e.entryOffset,
                                     "vhdx: region \(known ? name : e.guid) at \(hex(e.fileOffset)) of \(e.length) bytes is not 1 MiB aligned, overlaps the headers, or lies beyond the end of the file (\(ctx.size) bytes)"))
      }
    }
    guard let bat, let metadataRegion else {
      throw ImageError(.invalidField, format: format, field: "region table", offset: table.offset,
                       "lacks the \(bat == nil ? "BAT" : "metadata") region")
    }
    // No two regions, nor a region and the log, may share bytes (MS-VHDX 2.2.3.2).
    var spans = table.entries.map { ($0.guid == batGUID ? "BAT" : $0.guid == metadataGUID ? "metadata" : $0.guid, $0.fileOffset, $0.end) }
    if current.logLength > 0 { spans.append(("log", logStart, logEnd)) }
    for i in 0..<spans.count {
      for j in (i + 1)..<max(spans.count, i + 1) where spans[i].1 < spans[j].2 && spans[j].1 < spans[i].2 {
        info.findings.append(Finding("vhdx.region-overlap", .corrupt, field: "region table", offset: table.offset,
                                     "vhdx: \(spans[i].0) (\(hex(spans[i].1))..\(hex(spans[i].2))) overlaps \(spans[j].0) (\(hex(spans[j].1))..\(hex(spans[j].2)))"))
      }
    }

    // Metadata.
    let parsed = try parseMetadata(ctx, metadataRegion, into: &info, fs: &fs)
    fs.set("bat-offset", bat.fileOffset)
    fs.set("bat-length", UInt64(bat.length))
    fs.set("metadata-offset", metadataRegion.fileOffset)
    fs.set("metadata-length", UInt64(metadataRegion.length))

    // BAT size (MS-VHDX 2.5): chunk ratio = 2^23 x logical sector size / block size payload
    // blocks share one sector bitmap block.
    let chunkRatio = (UInt64(1) << 23) * UInt64(parsed.logical) / UInt64(parsed.blockSize)
    let dataBlocks = Checked.ceilDiv(parsed.virtualSize, UInt64(parsed.blockSize))
    let bitmapBlocks = Checked.ceilDiv(dataBlocks, chunkRatio)
    let batEntries = parsed.hasParent ? bitmapBlocks * (chunkRatio + 1)
      : dataBlocks == 0 ? 0 : dataBlocks + (dataBlocks - 1) / chunkRatio
    fs.set("chunk-ratio", chunkRatio)
    fs.set("bat-entries", batEntries)
    if batEntries * 8 > UInt64(bat.length) {
      info.findings.append(Finding("vhdx.bat-size", .corrupt, field: "region BAT", offset: bat.entryOffset,
                                   "vhdx: the BAT region holds \(bat.length / 8) entries but the virtual size of \(parsed.virtualSize) bytes in blocks of \(parsed.blockSize) needs \(batEntries)"))
    }

    // Log (MS-VHDX 2.3): a non-zero log guid with a valid entry means changes not yet replayed.
    if !current.logGUIDIsZero {
      let scan = logOK ? try scanLog(ctx, current) : .none
      if case let .entry(found) = scan {
        info.findings.append(Finding("vhdx.log-not-replayed", .unsafe, field: "log guid", offset: current.offset + 48,
                                     "vhdx: the log holds an entry at \(hex(found)) that was not replayed: the image's metadata is not what the log says, and qemu replays (writes) it when the image is opened read-write",
                                     fix: "open the image once read-write in Hyper-V or qemu to replay the log, then check again"))
      } else if case let .incomplete(why) = scan {
        // qemu searches the whole log; an entry past the scan's bounds would still be replayed.
        info.findings.append(Finding("vhdx.log-not-replayed", .unsafe, field: "log guid", offset: current.offset + 48,
                                     "vhdx: the header's log guid is set and the log could not be searched to its end (\(why)): an entry there would be replayed by qemu"))
      } else {
        info.findings.append(Finding("vhdx.log-not-replayed", .warning, field: "log guid", offset: current.offset + 48,
                                     "vhdx: the header's log guid is set but no valid log entry was found: the log is treated as empty"))
      }
    }

    info.formatSpecific = fs
    info.virtualSize = parsed.virtualSize
    info.clusterSize = UInt64(parsed.blockSize)
    info.subformat = parsed.hasParent ? "differencing" : parsed.leaveBlockAllocated ? "fixed" : "dynamic"
    return Parsed(headers: headers, current: current, regions: table.entries, bat: bat, metadata: metadataRegion,
                  blockSize: parsed.blockSize, leaveBlockAllocated: parsed.leaveBlockAllocated,
                  hasParent: parsed.hasParent, virtualSize: parsed.virtualSize,
                  logicalSectorSize: parsed.logical, physicalSectorSize: parsed.physical, chunkRatio: chunkRatio,
                  dataBlocks: dataBlocks, batEntries: batEntries, info: info)
  }

  struct MetadataValues {
    var blockSize: UInt32
    var leaveBlockAllocated: Bool
    var hasParent: Bool
    var virtualSize: UInt64
    var logical: UInt32
    var physical: UInt32
  }

  /// Metadata table header (MS-VHDX 2.6.1.1): signature "metadata" (8), reserved u16, entry count
  /// u16, reserved 20 bytes; then the entries.
  static func parseMetadata(_ ctx: ProbeContext, _ region: RegionEntry, into info: inout ImageInfo,
                            fs: inout JSONObject) throws(ImageError) -> MetadataValues
  {
    let base = region.fileOffset
    let regionLength = UInt64(region.length)
    guard regionLength >= UInt64(Limits.metadataTableSize), base <= ctx.size,
          UInt64(Limits.metadataTableSize) <= ctx.size - base
    else {
      throw ImageError(.truncated, format: format, field: "metadata region", offset: region.entryOffset,
                       "at \(hex(base)) of \(region.length) bytes cannot hold the 64 KiB metadata table inside the file (\(ctx.size) bytes)",
                       finding: "vhdx.region-range")
    }
    var r = try ctx.reader(at: base, count: Limits.metadataTableSize, format, "metadata table")
    guard r.matches(Array("metadata".utf8), at: 0) else {
      throw ImageError(.invalidField, format: format, field: "metadata table signature", offset: base, "is not \"metadata\"")
    }
    try r.skip(8, "signature")
    try r.skip(2, "reserved")
    let count = try r.u16LE("metadata entry count")
    guard count <= Limits.maxMetadataEntries else {
      throw ImageError(.limitExceeded, format: format, field: "metadata entry count", offset: base + 10,
                       "is \(count), limit \(Limits.maxMetadataEntries)")
    }
    try r.skip(20, "reserved")
    var entries: [String: MetadataEntry] = [:]
    for _ in 0..<Int(count) {
      let at = r.offset
      let itemID = try r.guidMixedEndian("metadata item id")
      let offset = try r.u32LE("metadata item offset")
      let length = try r.u32LE("metadata item length")
      let flags = try r.u32LE("metadata item flags")
      try r.skip(4, "reserved")
      let e = MetadataEntry(itemID: itemID, offset: offset, length: length, isUser: flags & 1 != 0,
                            isRequired: flags & 4 != 0, entryOffset: at)
      if length > 0 {
        guard offset >= UInt32(Limits.metadataTableSize), length <= Limits.maxMetadataItem,
              UInt64(offset) + UInt64(length) <= regionLength
        else {
          throw ImageError(.invalidField, format: format, field: "metadata item \(itemID)", offset: at,
                           "at \(hex(offset)) of \(length) bytes lies outside the metadata region (64 KiB to \(regionLength) bytes, items at most 1 MiB)",
                           finding: "vhdx.metadata-range")
        }
      }
      // An item is identified by its id and its user flag (MS-VHDX 2.6.1.2); the items this
      // parser knows are system items, so a user item with the same id never replaces one.
      let key = e.isUser ? "user:" + itemID : itemID
      guard entries[key] == nil else {
        throw ImageError(.invalidField, format: format, field: "metadata item \(itemID)", offset: at, "is listed twice")
      }
      entries[key] = e
      let known = !e.isUser && [fileParametersGUID, virtualDiskSizeGUID, page83GUID, logicalSectorGUID,
                                physicalSectorGUID, parentLocatorGUID].contains(itemID)
      if !known, e.isRequired {
        info.findings.append(Finding("vhdx.unknown-metadata", .unsafe, field: "metadata item \(itemID)", offset: at,
                                     "vhdx: required metadata item \(itemID) is not defined by the specification: its meaning cannot be verified (qemu refuses the image)"))
      }
    }
    func item(_ guid: String, _ name: String, size: Int) throws(ImageError) -> ByteReader {
      guard let e = entries[guid] else {
        throw ImageError(.invalidField, format: format, field: "metadata table", offset: base, "lacks the \(name) item")
      }
      guard e.length >= UInt32(size) else {
        throw ImageError(.invalidField, format: format, field: name, offset: e.entryOffset,
                         "is \(e.length) bytes, expected \(size)", finding: "vhdx.metadata-range")
      }
      return try ctx.reader(at: base + UInt64(e.offset), count: size, format, name)
    }
    // File parameters (MS-VHDX 2.6.2.1): block size u32, flags u32 (bit 0 leave blocks
    // allocated, bit 1 has parent).
    let params = try item(fileParametersGUID, "file parameters", size: 8)
    let blockSize = try params.u32LE(at: 0, "block size")
    let flags = try params.u32LE(at: 4, "file parameters flags")
    guard Checked.isPowerOfTwo(UInt64(blockSize)), blockSize >= Limits.minBlockSize, blockSize <= Limits.maxBlockSize else {
      throw ImageError(.invalidField, format: format, field: "block size", offset: params.base,
                       "is \(blockSize), expected a power of two from 1 MiB to 256 MiB")
    }
    // Virtual disk size (2.6.2.2), page 83 data (2.6.2.3), sector sizes (2.6.2.4, 2.6.2.5).
    let sizeItem = try item(virtualDiskSizeGUID, "virtual disk size", size: 8)
    let virtualSize = try sizeItem.u64LE(at: 0, "virtual disk size")
    var page83 = try item(page83GUID, "page 83 data", size: 16)
    let diskID = try page83.guidMixedEndian("page 83 data")
    let logical = try item(logicalSectorGUID, "logical sector size", size: 4).u32LE(at: 0, "logical sector size")
    let physical = try item(physicalSectorGUID, "physical sector size", size: 4).u32LE(at: 0, "physical sector size")
    guard logical == 512 || logical == 4096 else {
      throw ImageError(.invalidField, format: format, field: "logical sector size", offset: base, "is \(logical), expected 512 or 4096")
    }
    guard physical == 512 || physical == 4096 else {
      throw ImageError(.invalidField, format: format, field: "physical sector size", offset: base, "is \(physical), expected 512 or 4096")
    }
    guard virtualSize <= Limits.maxVirtualSize else {
      throw ImageError(.limitExceeded, format: format, field: "virtual disk size", offset: sizeItem.base,
                       "is \(virtualSize), limit \(Limits.maxVirtualSize) (64 TiB)")
    }
    if virtualSize % UInt64(logical) != 0 {
      info.findings.append(Finding("vhdx.metadata-range", .corrupt, field: "virtual disk size", offset: sizeItem.base,
                                   "vhdx: virtual disk size \(virtualSize) is not a multiple of the logical sector size \(logical)"))
    }
    let leave = flags & 1 != 0
    let hasParent = flags & 2 != 0
    fs.set("block-size", UInt64(blockSize))
    fs.set("leave-block-allocated", leave)
    fs.set("has-parent", hasParent)
    fs.set("logical-sector-size", UInt64(logical))
    fs.set("physical-sector-size", UInt64(physical))
    fs.set("virtual-disk-id", diskID)

    if let e = entries[parentLocatorGUID] {
      try parseParentLocator(ctx, base: base + UInt64(e.offset), length: e.length, entry: e, into: &info, fs: &fs)
    }
    if hasParent {
      info.findings.append(Finding("vhdx.differencing", .unsafe, field: "file parameters has parent", offset: params.base + 4,
                                   "vhdx: differencing disk: unallocated sectors come from a parent image outside this file",
                                   fix: "merge the disk into its parent with Hyper-V (qemu does not open VHDX differencing disks)"))
      if entries[parentLocatorGUID] == nil {
        info.findings.append(Finding("vhdx.metadata-range", .corrupt, field: "parent locator", offset: base,
                                     "vhdx: the disk has a parent but no parent locator item"))
      }
    }
    return MetadataValues(blockSize: blockSize, leaveBlockAllocated: leave, hasParent: hasParent,
                          virtualSize: virtualSize, logical: logical, physical: physical)
  }

  /// Parent locator (MS-VHDX 2.6.2.6): locator type guid, reserved u16, key/value count u16, then
  /// entries of key offset u32, value offset u32, key length u16, value length u16 (offsets from
  /// the start of the item; UTF-16LE text).
  static func parseParentLocator(_ ctx: ProbeContext, base: UInt64, length: UInt32, entry: MetadataEntry,
                                 into info: inout ImageInfo, fs: inout JSONObject) throws(ImageError)
  {
    var r = try ctx.reader(at: base, count: Int(length), format, "parent locator")
    let type = try r.guidMixedEndian("parent locator type")
    try r.skip(2, "reserved")
    let count = try r.u16LE("parent locator key value count")
    guard count <= Limits.maxLocatorEntries else {
      throw ImageError(.limitExceeded, format: format, field: "parent locator key value count", offset: base + 18,
                       "is \(count), limit \(Limits.maxLocatorEntries)", finding: "vhdx.metadata-range")
    }
    var pairs = JSONObject()
    var list: [LocatorPair] = []
    for i in 0..<Int(count) {
      let keyOffset = try r.u32LE("parent locator entry \(i) key offset")
      let valueOffset = try r.u32LE("parent locator entry \(i) value offset")
      let keyLength = try r.u16LE("parent locator entry \(i) key length")
      let valueLength = try r.u16LE("parent locator entry \(i) value length")
      func text(_ off: UInt32, _ len: UInt16, _ what: String) throws(ImageError) -> String {
        guard UInt64(off) + UInt64(len) <= UInt64(length) else {
          throw ImageError(.invalidField, format: format, field: "parent locator entry \(i) \(what)",
                           offset: base + 20 + UInt64(i) * 12,
                           "at \(hex(off)) of \(len) bytes lies outside the \(length)-byte locator", finding: "vhdx.metadata-range")
        }
        return Text.utf16LE(try r.bytes(at: Int(off), Int(len), "parent locator entry \(i) \(what)"))
      }
      let key = try text(keyOffset, keyLength, "key")
      let value = try text(valueOffset, valueLength, "value")
      pairs.set(key, value)
      list.append(LocatorPair(key: key, value: value, offset: base + UInt64(valueOffset)))
    }
    var locator = JSONObject()
    locator.set("type", type)
    locator.set("entries", pairs.json)
    fs.set("parent-locator", locator.json)
    let pathKeys = ["relative_path", "volume_path", "absolute_win32_path"]
    for p in list {
      if pathKeys.contains(p.key) {
        info.externalReferences.append(ExternalReference(kind: "parent-locator", name: p.value, offset: p.offset))
        info.findings.append(Finding("vhdx.parent-locator", .unsafe, field: "parent locator \(p.key)", offset: p.offset,
                                     "vhdx: parent locator \(p.key) names \"\(p.value)\": a reader following it opens a file outside the image"))
      } else if p.key == "parent_linkage" || p.key == "parent_linkage2" {
        fs.set(p.key.replacingUnderscores, p.value)
      }
    }
    if let first = list.first(where: { $0.key == "relative_path" }) ?? list.first(where: { pathKeys.contains($0.key) }) {
      info.backingFilename = first.value
      fs.set("parent-name", first.value)
    }
  }

  /// What a log scan found: a valid entry, none in the whole log, or no answer within the bounds.
  enum LogScan {
    case entry(UInt64)
    case none
    case incomplete(String)
  }

  /// Scans the log for an entry ("loge") carrying the header's log guid with a valid CRC-32C.
  /// Bounded by `Limits.maxLogScan` and `maxLogCandidates`; reaching a bound is `.incomplete`.
  /// A stream that no longer holds the log throws `.needsSeekable` rather than guessing.
  static func scanLog(_ ctx: ProbeContext, _ h: Header) throws(ImageError) -> LogScan {
    let length = min(UInt64(h.logLength), Limits.maxLogScan)
    var pos: UInt64 = 0
    var candidates = 0
    let step: UInt64 = 4096
    while pos < length {
      let n = min(UInt64(Limits.batChunkBytes), length - pos)
      let chunk = try ctx.read(at: h.logOffset + pos, count: Int(n))
      guard chunk.count == Int(n) else { return .incomplete("the log is cut short at \(hex(h.logOffset + pos))") }
      var k = 0
      while k + 64 <= chunk.count {
        if chunk[k] == 0x6c, chunk[k + 1] == 0x6f, chunk[k + 2] == 0x67, chunk[k + 3] == 0x65 {
          candidates += 1
          if candidates > Limits.maxLogCandidates {
            return .incomplete("more than \(Limits.maxLogCandidates) candidate entries")
          }
          let at = h.logOffset + pos + UInt64(k)
          let r = ByteReader(Array(chunk[k..<(k + 64)]), base: at, format: format)
          if let entryLength = try? r.u32LE(at: 8, "log entry length"), let checksum = try? r.u32LE(at: 4, "log entry checksum"),
             entryLength >= 64, entryLength % 4096 == 0, entryLength <= Limits.maxLogEntry,
             UInt64(entryLength) <= UInt64(h.logLength), Array(chunk[(k + 32)..<(k + 48)]) == h.logGUIDRaw,
             case let entry = try ctx.read(at: at, count: Int(entryLength)), entry.count == Int(entryLength),
             CRC32C.checksum(entry[...], zeroingFieldAt: 4) == checksum
          {
            return .entry(at)
          }
        }
        k += Int(step)
      }
      pos += n
    }
    if UInt64(h.logLength) > Limits.maxLogScan { return .incomplete("it is longer than \(Limits.maxLogScan) bytes") }
    return .none
  }

  // MARK: deep check

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var report = CheckReport()
    let p: Parsed
    do {
      guard let parsed = try parse(ctx) else {
        report.counts.set("check-errors", UInt64(1))
        return report
      }
      p = parsed
    } catch {
      report.findings.append(Finding(corrupt: error))
      report.counts.set("corruptions", UInt64(1))
      report.counts.set("check-errors", UInt64(error.kind == .needsSeekable ? 1 : 0))
      return report
    }
    var checkErrors: UInt64 = 0
    // Every problem is counted; the first `Limits.maxListedFindings` are listed.
    var cap = FindingCap(format: "vhdx", limit: Limits.maxListedFindings)
    func add(_ severity: Severity, _ f: @autoclosure () -> Finding) { cap.admit(severity, f, into: &report.findings) }
    let size = ctx.size
    let mib = Limits.alignment
    // Structures blocks must not touch: the header area, the log, every region.
    var metadata: [(String, UInt64, UInt64)] = [("headers and region tables", 0, mib)]
    if p.current.logLength > 0 {
      metadata.append(("log", p.current.logOffset, p.current.logOffset &+ UInt64(p.current.logLength)))
    }
    for r in p.regions {
      metadata.append((r.guid == batGUID ? "BAT" : r.guid == metadataGUID ? "metadata region" : "region \(r.guid)",
                       r.fileOffset, r.end))
    }
    // Only the part of the BAT region inside the file is read (vhdx.region-range already names
    // a region that leaves it), so offsets below cannot overflow.
    let batInFile = p.bat.fileOffset <= size ? min(UInt64(p.bat.length), size - p.bat.fileOffset) : 0
    let entries = min(p.batEntries, batInFile / 8)
    let blockSize = UInt64(p.blockSize)
    let group = p.chunkRatio + 1
    var allocated: UInt64 = 0
    var tracked: [UInt64] = []
    var trackingComplete = true
    var index: UInt64 = 0
    while index < entries {
      let n = min(UInt64(Limits.batChunkBytes / 8), entries - index)
      let at = p.bat.fileOffset + index * 8
      let chunk: [UInt8]
      do {
        chunk = try ctx.source.readExactly(at: at, count: Int(n * 8), format: format, field: "BAT")
      } catch {
        add(error.kind == .needsSeekable ? .warning : .corrupt, Finding(corrupt: error, id: error.kind == .truncated ? "vhdx.truncated" : error.kind == .needsSeekable ? "vhdx.needs-seekable" : nil))
        checkErrors += 1
        break
      }
      chunk.withUnsafeBytes { buf in
        for k in 0..<Int(n) {
          let e = UInt64(littleEndian: buf.loadUnaligned(fromByteOffset: k * 8, as: UInt64.self))
          let i = index + UInt64(k)
          let state = e & 7
          let isBitmap = (i + 1) % group == 0
          let entryOffset = at + UInt64(k) * 8
          let present: Bool
          if isBitmap {
            // Sector bitmap entries: 0 not present, 6 present (MS-VHDX 2.5.1.2); only
            // differencing disks use them.
            switch state {
            case 0: present = false
            case 6 where p.hasParent: present = true
            default:
              add(.corrupt, Finding("vhdx.bat-state", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                          "vhdx: sector bitmap BAT entry \(i) at \(hex(entryOffset)) has state \(state), expected \(p.hasParent ? "0 or 6" : "0 (the disk has no parent)")"))
              continue
            }
          } else {
            // Payload entries (MS-VHDX 2.5.1.1): 0 not present, 1 undefined, 2 zero,
            // 3 unmapped, 6 fully present, 7 partially present (differencing only).
            switch state {
            case 0, 1, 2, 3: present = false
            case 6: present = true
            case 7 where p.hasParent: present = true
            default:
              add(.corrupt, Finding("vhdx.bat-state", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                          "vhdx: payload BAT entry \(i) at \(hex(entryOffset)) has state \(state), which is not defined\(state == 7 ? " for a disk without a parent" : "")"))
              continue
            }
            if present { allocated += 1 }
          }
          guard present else { continue }
          let mbNumber = e >> 20
          let start = mbNumber << 20
          let span = isBitmap ? mib : blockSize
          if mbNumber == 0 || start >= size {
            add(.corrupt, Finding("vhdx.bat-out-of-range", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                        "vhdx: BAT entry \(i) at \(hex(entryOffset)) points at \(hex(start)), \(mbNumber == 0 ? "inside the header area" : "beyond the end of the file (\(size) bytes)")"))
            continue
          }
          let end = start + span  // start < size < 2^63, span <= 256 MiB
          if end > size {
            add(.corrupt, Finding("vhdx.truncated", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                        "vhdx: block \(i) at \(hex(start)) needs \(span) bytes but the file ends at \(hex(size)) (truncated)"))
          }
          for (name, ms, me) in metadata where start < me && ms < end {
            add(.corrupt, Finding("vhdx.block-overlap", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                        "vhdx: block \(i) at \(hex(start))..\(hex(end)) overlaps the \(name) at \(hex(ms))"))
          }
          if tracked.count < Limits.maxTrackedBlocks {
            // MiB number in the high bits, span in MiB (1...256) in the low 9 bits.
            tracked.append(mbNumber << 9 | (span >> 20))
          } else {
            trackingComplete = false
          }
        }
      }
      index += n
    }
    tracked.sort()
    var reachMB: UInt64 = 0
    var previousMB: UInt64 = 0
    for (j, t) in tracked.enumerated() {
      let mbStart = t >> 9
      let mbEnd = mbStart + (t & 0x1ff)
      if j > 0, mbStart < reachMB {
        add(.corrupt, Finding("vhdx.block-overlap", .corrupt, field: "BAT", offset: mbStart << 20,
                    mbStart == previousMB
                      ? "vhdx: two BAT entries point at the same block at \(hex(mbStart << 20))"
                      : "vhdx: the block at \(hex(mbStart << 20)) overlaps the block at \(hex(previousMB << 20))"))
      }
      if mbEnd > reachMB {
        reachMB = mbEnd
        previousMB = mbStart
      }
    }
    if !trackingComplete {
      report.findings.append(Finding("vhdx.check-incomplete", .warning,
                                     "vhdx: more than \(Limits.maxTrackedBlocks) allocated blocks: overlap detection covered the first \(Limits.maxTrackedBlocks)"))
      checkErrors += 1
    }
    report.counts.set("allocated-clusters", allocated)
    report.counts.set("total-clusters", p.dataBlocks)
    report.counts.set("corruptions", cap.corruptions)
    report.counts.set("leaks", UInt64(0))
    report.counts.set("check-errors", checkErrors)
    return report
  }
}

extension String {
  /// `parent_linkage` -> `parent-linkage` (imgtool's JSON keys are kebab-case).
  fileprivate var replacingUnderscores: String {
    String(self.map { $0 == "_" ? "-" : $0 })
  }
}
