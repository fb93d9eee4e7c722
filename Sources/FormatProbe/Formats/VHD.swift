/// VHD: Microsoft Virtual Hard Disk (Connectix Virtual PC), qemu driver `vpc`.
///
/// Reference: "Virtual Hard Disk Image Format Specification", Microsoft, version 1.0 (2006).
///
/// Layout:
/// * fixed:        guest data (current size bytes), then the 512-byte footer. Nothing at offset 0
///                 identifies the file, so detection reads the tail.
/// * dynamic:      footer copy at 0, dynamic disk header ("cxsparse", 1024 bytes) at the footer's
///                 data offset, the Block Allocation Table (BAT, big-endian u32 sector numbers,
///                 0xFFFFFFFF = unallocated), data blocks (sector bitmap + block), footer at the end.
/// * differencing: dynamic plus a parent (UUID, UTF-16BE name, 8 parent locators naming files).
///
/// Some early tools wrote a 511-byte footer (the last reserved byte missing); it is accepted at the
/// tail and reported in `notes`. All integers are big-endian.
public enum VHDProbe: DeepCheckable {
  public static let id = "vhd"
  public static let role = ProbeRole.image
  static let format = "vhd"

  public enum Limits {
    /// The footer is 512 bytes (spec, "Hard Disk Footer Format").
    public static let footerSize = 512
    /// Early Virtual PC releases wrote 511-byte footers (spec note on the footer size).
    public static let shortFooterSize = 511
    /// The dynamic disk header is 1024 bytes (spec, "Dynamic Disk Header Format").
    public static let dynamicHeaderSize = 1024
    /// Block sizes are powers of two of at least one sector (qemu vpc_open rejects others); the
    /// spec's default is 2 MiB. 256 MiB bounds the sector bitmap of one block to 64 KiB.
    public static let minBlockSize: UInt64 = 512
    public static let maxBlockSize: UInt64 = 256 << 20
    /// BAT entries are 32-bit sector numbers, so a VHD file cannot exceed 2 TiB of addressable
    /// blocks; 2^32 entries is the hard ceiling of the field and the BAT must also fit in the file.
    public static let maxTableEntries: UInt64 = 1 << 32
    /// qemu refuses images larger than 65535 x 255 x 255 sectors (VHD_MAX_SECTORS, about 2040 GiB,
    /// the size the spec quotes as the format's maximum).
    public static let qemuMaxSectors: UInt64 = 65535 * 255 * 255
    /// The largest CHS geometry (65535/16/255): images this large keep their size in current size
    /// (qemu VHD_MAX_GEOMETRY; spec appendix "CHS calculation").
    public static let maxGeometrySectors: UInt64 = 65535 * 16 * 255
    /// Parent locator data is a path; Windows paths are at most 32767 UTF-16 units (64 KiB).
    public static let maxLocatorBytes = 64 << 10
    /// Deep check lists at most this many findings (all are counted in `corruptions`), so a
    /// hostile BAT cannot make the report itself huge.
    public static let maxListedFindings = 50
    /// Deep check reads the BAT in pieces of this size (memory stays bounded whatever the table).
    public static let batChunkBytes = 4 << 20
    /// Deep check sorts at most this many allocated block offsets for overlap detection
    /// (8 bytes each: 64 MiB). 2^23 blocks of 2 MiB cover 16 TiB, eight times the format maximum.
    public static let maxTrackedBlocks = 1 << 23
  }

  /// Disk types (footer offset 60).
  enum DiskType: UInt32 {
    case fixed = 2, dynamic = 3, differencing = 4
    var name: String {
      switch self {
      case .fixed: return "fixed"
      case .dynamic: return "dynamic"
      case .differencing: return "differencing"
      }
    }
  }

  /// Hard disk footer (spec "Hard Disk Footer Format"), 512 bytes, big-endian.
  ///
  /// | off | size | field |
  /// |---|---|---|
  /// | 0 | 8 | cookie "conectix" |
  /// | 8 | 4 | features (bit 1 reserved, always set) |
  /// | 12 | 4 | file format version (0x00010000) |
  /// | 16 | 8 | data offset (dynamic header; 0xFFFFFFFFFFFFFFFF for fixed) |
  /// | 24 | 4 | timestamp (seconds since 2000-01-01 00:00 UTC) |
  /// | 28 | 4 | creator application ("vpc ", "vs  ", "win ", "qemu", "qem2", "d2v ", "tap\0", ...) |
  /// | 32 | 4 | creator version (major << 16 \| minor) |
  /// | 36 | 4 | creator host OS ("Wi2k", "Mac ") |
  /// | 40 | 8 | original size |
  /// | 48 | 8 | current size |
  /// | 56 | 4 | disk geometry: cylinders u16, heads u8, sectors per track u8 |
  /// | 60 | 4 | disk type (2 fixed, 3 dynamic, 4 differencing) |
  /// | 64 | 4 | checksum: one's complement of the byte sum with this field zeroed |
  /// | 68 | 16 | unique id |
  /// | 84 | 1 | saved state |
  /// | 85 | 427 | reserved |
  struct Footer {
    static let checksumField = 64
    /// Absolute offset of the footer in the input.
    var offset: UInt64
    /// 512, or 511 for the short footer some early tools wrote.
    var length: Int
    var raw: [UInt8]
    var features: UInt32
    var version: UInt32
    var dataOffset: UInt64
    var timestamp: UInt32
    var creatorApp: [UInt8]
    var creatorVersion: UInt32
    var creatorOS: String
    var originalSize: UInt64
    var currentSize: UInt64
    var cylinders: UInt16
    var heads: UInt8
    var sectorsPerTrack: UInt8
    var diskTypeRaw: UInt32
    var checksum: UInt32
    var uniqueID: String
    var savedState: UInt8
    var computedChecksum: UInt32

    /// Decodes a footer of `length` bytes (512 or 511) held in `bytes`, found at `offset`.
    static func decode(_ bytes: [UInt8], offset: UInt64, length: Int) throws(ImageError) -> Footer {
      // A 511-byte footer lacks the last reserved byte: pad it so the layout is the same.
      let full = length == Limits.shortFooterSize ? bytes + [0] : bytes
      var r = ByteReader(full, base: offset, format: VHDProbe.format)
      _ = try r.bytes(8, "cookie")
      let features = try r.u32BE("features")
      let version = try r.u32BE("file format version")
      let dataOffset = try r.u64BE("data offset")
      let timestamp = try r.u32BE("time stamp")
      let creatorApp = Array(try r.bytes(4, "creator application"))
      let creatorVersion = try r.u32BE("creator version")
      let creatorOS = try r.text(4, "creator host OS")
      let originalSize = try r.u64BE("original size")
      let currentSize = try r.u64BE("current size")
      let cylinders = try r.u16BE("disk geometry cylinders")
      let heads = try r.u8("disk geometry heads")
      let spt = try r.u8("disk geometry sectors per track")
      let diskType = try r.u32BE("disk type")
      let checksum = try r.u32BE("checksum")
      let uuid = GUID.bigEndian(try r.bytes(16, "unique id"))
      let saved = try r.u8("saved state")
      return Footer(offset: offset, length: length, raw: Array(full.prefix(Limits.footerSize)), features: features,
                    version: version, dataOffset: dataOffset, timestamp: timestamp, creatorApp: creatorApp,
                    creatorVersion: creatorVersion, creatorOS: creatorOS, originalSize: originalSize,
                    currentSize: currentSize, cylinders: cylinders, heads: heads, sectorsPerTrack: spt,
                    diskTypeRaw: diskType, checksum: checksum, uniqueID: uuid, savedState: saved,
                    computedChecksum: VHDProbe.onesComplementSum(full, skipping: checksumField))
    }

    var diskType: DiskType? { DiskType(rawValue: diskTypeRaw) }
    var creatorAppText: String { Text.ascii(creatorApp) }
    var chsSectors: UInt64 { UInt64(cylinders) * UInt64(heads) * UInt64(sectorsPerTrack) }
    var creatorVersionText: String { "\(creatorVersion >> 16).\(creatorVersion & 0xffff)" }
  }

  /// Dynamic disk header (spec "Dynamic Disk Header Format"), 1024 bytes, big-endian.
  ///
  /// | off | size | field |
  /// |---|---|---|
  /// | 0 | 8 | cookie "cxsparse" |
  /// | 8 | 8 | data offset (unused, 0xFFFFFFFFFFFFFFFF) |
  /// | 16 | 8 | table offset (absolute offset of the BAT) |
  /// | 24 | 4 | header version (0x00010000) |
  /// | 28 | 4 | max table entries |
  /// | 32 | 4 | block size |
  /// | 36 | 4 | checksum (as the footer's, over 1024 bytes) |
  /// | 40 | 16 | parent unique id |
  /// | 56 | 4 | parent time stamp |
  /// | 60 | 4 | reserved |
  /// | 64 | 512 | parent unicode name (UTF-16BE) |
  /// | 576 | 8 x 24 | parent locator entries: platform code u32, platform data space u32, platform data length u32, reserved u32, platform data offset u64 |
  /// | 768 | 256 | reserved |
  struct DynamicHeader {
    static let checksumField = 36
    var offset: UInt64
    var dataOffset: UInt64
    var tableOffset: UInt64
    var version: UInt32
    var maxTableEntries: UInt32
    var blockSize: UInt32
    var checksum: UInt32
    var parentUUID: String
    var parentUUIDIsZero: Bool
    var parentTimestamp: UInt32
    var parentName: String
    var locators: [ParentLocator]
    var computedChecksum: UInt32

    static func decode(_ r0: ByteReader) throws(ImageError) -> DynamicHeader {
      var r = r0
      guard r.matches(Array("cxsparse".utf8), at: 0) else {
        throw ImageError(.invalidField, format: VHDProbe.format, field: "dynamic header cookie", offset: r.base,
                         "is not \"cxsparse\"")
      }
      _ = try r.bytes(8, "dynamic header cookie")
      let dataOffset = try r.u64BE("dynamic header data offset")
      let tableOffset = try r.u64BE("table offset")
      let version = try r.u32BE("header version")
      let maxEntries = try r.u32BE("max table entries")
      let blockSize = try r.u32BE("block size")
      let checksum = try r.u32BE("dynamic header checksum")
      let parentUUIDBytes = try r.bytes(16, "parent unique id")
      let parentTimestamp = try r.u32BE("parent time stamp")
      try r.skip(4, "reserved")
      let parentName = Text.utf16BE(try r.bytes(512, "parent unicode name"))
      var locators: [ParentLocator] = []
      for i in 0..<8 {
        let at = r.offset
        let code = try r.u32BE("parent locator \(i) platform code")
        let space = try r.u32BE("parent locator \(i) platform data space")
        let length = try r.u32BE("parent locator \(i) platform data length")
        try r.skip(4, "reserved")
        let dataOff = try r.u64BE("parent locator \(i) platform data offset")
        locators.append(ParentLocator(index: i, entryOffset: at, platformCode: code, dataSpace: space,
                                      dataLength: length, dataOffset: dataOff))
      }
      return DynamicHeader(offset: r.base, dataOffset: dataOffset, tableOffset: tableOffset, version: version,
                           maxTableEntries: maxEntries, blockSize: blockSize, checksum: checksum,
                           parentUUID: GUID.bigEndian(parentUUIDBytes), parentUUIDIsZero: GUID.isZero(parentUUIDBytes),
                           parentTimestamp: parentTimestamp, parentName: parentName, locators: locators,
                           computedChecksum: VHDProbe.onesComplementSum(r.bytes, skipping: checksumField))
    }

    /// Bytes of one block's sector bitmap: one bit per sector, padded to a whole sector.
    var bitmapSize: UInt64 {
      let bits = UInt64(blockSize) / 512
      return Checked.ceilDiv(Checked.ceilDiv(bits, 8), 512) * 512
    }
  }

  /// A parent locator entry: where a differencing disk's parent might be found.
  struct ParentLocator {
    var index: Int
    var entryOffset: UInt64
    var platformCode: UInt32
    var dataSpace: UInt32
    var dataLength: UInt32
    var dataOffset: UInt64

    var isUsed: Bool { platformCode != 0 }

    /// Spec platform codes: Wi2r/Wi2k (deprecated, ANSI paths), W2ru/W2ku (UTF-16LE relative and
    /// absolute paths), Mac (an alias blob), MacX (a UTF-8 file URL).
    var platformName: String { Text.ascii(withUnsafeBytes(of: platformCode.bigEndian) { Array($0) }) }

    /// The bytes reserved for the locator data: the spec gives data space in sectors, but some
    /// tools (including Virtual PC itself) store bytes; take whichever is plausible.
    var reservedBytes: UInt64 {
      let space = UInt64(dataSpace)
      return space * 512 >= UInt64(dataLength) && space < (1 << 23) ? space * 512 : max(space, UInt64(dataLength))
    }

    func decode(_ data: ArraySlice<UInt8>) -> String {
      switch platformName {
      case "W2ru", "W2ku": return Text.utf16LE(data)
      case "MacX", "Wi2r", "Wi2k": return Text.utf8(data)
      case "Mac": return "(Mac OS alias record, \(data.count) bytes)"
      default: return Text.ascii(data)
      }
    }
  }

  /// A VHD time stamp (seconds since 2000-01-01 00:00:00 UTC) as ISO 8601, e.g.
  /// `2025-05-08T06:13:20Z` (proleptic Gregorian calendar; days-to-civil conversion).
  static func utc(_ secondsSince2000: UInt32) -> String {
    let unix = 946_684_800 + Int(secondsSince2000)
    let days = unix / 86400
    let secs = unix % 86400
    let z = days + 719_468
    let era = z / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let day = doy - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(year)-\(two(month))-\(two(day))T\(two(secs / 3600)):\(two(secs / 60 % 60)):\(two(secs % 60))Z"
  }

  /// The spec's checksum: one's complement of the sum of all bytes, the checksum field taken as 0.
  static func onesComplementSum(_ bytes: [UInt8], skipping field: Int) -> UInt32 {
    var sum: UInt32 = 0
    for (i, b) in bytes.enumerated() where i < field || i >= field + 4 { sum &+= UInt32(b) }
    return ~sum
  }

  // MARK: detection

  /// Where the footer that describes the image lives, and the whole parse.
  struct Parsed {
    var footer: Footer
    /// The copy at offset 0 (dynamic/differencing), if present.
    var headCopy: Footer?
    /// The copy at the end of the file, if present.
    var tailCopy: Footer?
    var header: DynamicHeader?
    var info: ImageInfo
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    try parse(ctx)?.info
  }

  static let cookie = Array("conectix".utf8)

  /// Finds the footer (head copy for dynamic disks, tail for fixed ones), decodes it and the
  /// dynamic header, and describes the image. Returns nil when no footer cookie is present.
  static func parse(_ ctx: ProbeContext) throws(ImageError) -> Parsed? {
    let head = ctx.headReader(format)
    let headHasCookie = head.matches(cookie, at: 0)
    var headCopy: Footer?
    if headHasCookie {
      guard head.count >= Limits.footerSize else {
        throw ImageError.truncated(format, "hard disk footer", at: 0, need: UInt64(Limits.footerSize),
                                   have: UInt64(head.count))
      }
      headCopy = try Footer.decode(Array(head.bytes[0..<Limits.footerSize]), offset: 0, length: Limits.footerSize)
    }
    var tailCopy: Footer?
    if ctx.size >= UInt64(Limits.shortFooterSize) {
      let tail = try ctx.tail(Limits.footerSize, format)
      if tail.count == Limits.footerSize, tail.matches(cookie, at: 0) {
        tailCopy = try Footer.decode(tail.bytes, offset: tail.base, length: Limits.footerSize)
      } else if tail.matches(cookie, at: tail.count - Limits.shortFooterSize) {
        let start = tail.count - Limits.shortFooterSize
        tailCopy = try Footer.decode(Array(tail.bytes[start...]), offset: tail.base + UInt64(start),
                                     length: Limits.shortFooterSize)
      }
    }
    // The head copy describes dynamic and differencing disks (qemu reads it first too). A fixed
    // disk has only the tail footer; a fixed disk whose guest data starts with a VHD footer is
    // still described by its tail.
    let footer: Footer
    if let h = headCopy, h.diskType == .dynamic || h.diskType == .differencing {
      footer = h
    } else if let t = tailCopy {
      footer = t
    } else if let h = headCopy {
      footer = h
    } else {
      return nil
    }
    // A cookie at 0 in front of a fixed disk's tail footer is what qemu reads first (it checks
    // offset 0 before the end): unless it is the same footer, two readers see two disks.
    let shadow = footer.diskType == .fixed && footer.offset != 0 ? headCopy : nil
    if footer.diskType == .fixed { headCopy = nil }
    var parsed = try describe(ctx, footer: footer, headCopy: headCopy, tailCopy: tailCopy)
    if let h = shadow, h.raw != footer.raw {
      let valid = h.checksum == h.computedChecksum
      parsed.info.findings.append(Finding("vhd.footer-mismatch", valid ? .unsafe : .corrupt, field: "hard disk footer", offset: 0,
                                          "vhd: the fixed disk's data starts with a footer cookie \(valid ? "describing another disk" : "whose checksum is wrong") that differs from the footer at \(hex(footer.offset)): qemu reads the copy at offset 0 first and \(valid ? "acts on it" : "refuses the image")"))
    }
    return parsed
  }

  static func describe(_ ctx: ProbeContext, footer: Footer, headCopy: Footer?, tailCopy: Footer?) throws(ImageError)
    -> Parsed
  {
    guard let type = footer.diskType else {
      throw ImageError(.invalidField, format: format, field: "disk type", offset: footer.offset + 60,
                       "is \(footer.diskTypeRaw), expected 2 (fixed), 3 (dynamic) or 4 (differencing)")
    }
    var info = ImageInfo(probe: id, qemuFormat: "vpc", diskFormat: .vhd, subformat: type.name)
    if footer.checksum != footer.computedChecksum {
      info.findings.append(Finding("vhd.footer-checksum", .corrupt, field: "checksum", offset: footer.offset + 64,
                                   "vhd: footer checksum at \(hex(footer.offset + 64)) is \(hex(footer.checksum)), computed \(hex(footer.computedChecksum))",
                                   fix: "qemu-img refuses the image; rewrite the footer with a tool that recomputes it"))
    }
    if footer.version != 0x0001_0000 {
      info.findings.append(Finding("vhd.version", .warning, field: "file format version", offset: footer.offset + 12,
                                   "vhd: file format version at \(hex(footer.offset + 12)) is \(hex(footer.version)), the spec defines 0x10000"))
    }
    if footer.length == Limits.shortFooterSize {
      info.notes.append("the footer is 511 bytes long (written by early Virtual PC releases); qemu-img does not find it")
    }
    if footer.savedState != 0 {
      info.notes.append("the saved-state flag is set: the disk belongs to a virtual machine that was saved, not shut down")
    }

    // Guest-visible size.
    let (size, sizeNote) = virtualSize(footer, type: type)
    info.virtualSize = size
    if let sizeNote { info.notes.append(sizeNote) }
    // Geometry rounds a size down by less than one cylinder (heads x sectors x 512 bytes); a wider
    // gap means readers that trust current size (Hyper-V, image-service inspectors) and readers that
    // trust the geometry (qemu for most creators) see disks of different sizes.
    let chsBytes = footer.chsSectors * 512
    let cylinder = UInt64(footer.heads) * UInt64(footer.sectorsPerTrack) * 512
    let gap = chsBytes > footer.currentSize ? chsBytes - footer.currentSize : footer.currentSize - chsBytes
    if footer.chsSectors != Limits.maxGeometrySectors, gap > max(cylinder, 512) {
      info.findings.append(Finding("vhd.size-disagreement", .warning, field: "current size", offset: footer.offset + 48,
                                   "vhd: current size \(footer.currentSize) and geometry \(footer.cylinders)/\(footer.heads)/\(footer.sectorsPerTrack) (\(chsBytes) bytes) differ by more than one cylinder: readers will disagree on the disk's size"))
    }
    if size / 512 > Limits.qemuMaxSectors {
      info.notes.append("qemu-img refuses VHD images larger than \(Limits.qemuMaxSectors) sectors (about 2040 GiB)")
    }

    var fs = JSONObject()
    fs.set("features", UInt64(footer.features))
    fs.set("file-format-version", "\(footer.version >> 16).\(footer.version & 0xffff)")
    fs.set("creator-app", footer.creatorAppText)
    fs.set("creator-version", footer.creatorVersionText)
    fs.set("creator-os", footer.creatorOS)
    fs.set("disk-type", type.name)
    var geometry = JSONObject()
    geometry.set("cylinders", UInt64(footer.cylinders))
    geometry.set("heads", UInt64(footer.heads))
    geometry.set("sectors-per-track", UInt64(footer.sectorsPerTrack))
    fs.set("geometry", geometry.json)
    fs.set("current-size", footer.currentSize)
    fs.set("original-size", footer.originalSize)
    fs.set("timestamp", UInt64(footer.timestamp))
    fs.set("timestamp-utc", utc(footer.timestamp))
    fs.set("uuid", footer.uniqueID)
    fs.set("saved-state", footer.savedState != 0)

    var header: DynamicHeader?
    switch type {
    case .fixed:
      // The guest data is everything before the footer.
      guard footer.currentSize <= footer.offset else {
        throw ImageError(.truncated, format: format, field: "current size", offset: footer.offset + 48,
                         "is \(footer.currentSize) bytes but the fixed disk's data area before the footer is \(footer.offset) bytes (truncated)",
                         finding: "vhd.truncated")
      }
    case .dynamic, .differencing:
      let h = try readDynamicHeader(ctx, footer: footer)
      header = h
      info.clusterSize = UInt64(h.blockSize)
      if h.version != 0x0001_0000 {
        info.findings.append(Finding("vhd.version", .warning, field: "header version", offset: h.offset + 24,
                                     "vhd: dynamic header version at \(hex(h.offset + 24)) is \(hex(h.version)), the spec defines 0x10000"))
      }
      fs.set("header-version", "\(h.version >> 16).\(h.version & 0xffff)")
      fs.set("block-size", UInt64(h.blockSize))
      fs.set("max-table-entries", UInt64(h.maxTableEntries))
      fs.set("table-offset", h.tableOffset)
      if h.checksum != h.computedChecksum {
        info.findings.append(Finding("vhd.header-checksum", .corrupt, field: "dynamic header checksum",
                                     offset: h.offset + 36,
                                     "vhd: dynamic header checksum at \(hex(h.offset + 36)) is \(hex(h.checksum)), computed \(hex(h.computedChecksum))"))
      }
      // Every block the guest can address needs a BAT entry (qemu: "Page table too small").
      let neededBlocks = Checked.ceilDiv(size, UInt64(h.blockSize))
      if UInt64(h.maxTableEntries) < neededBlocks {
        throw ImageError(.invalidField, format: format, field: "max table entries", offset: h.offset + 28,
                         "is \(h.maxTableEntries) but the virtual size of \(size) bytes needs \(neededBlocks) blocks of \(h.blockSize) bytes",
                         finding: "vhd.bat-out-of-range")
      }
      if type == .differencing || !h.parentUUIDIsZero || !h.parentName.isEmpty || h.locators.contains(where: \.isUsed) {
        try describeParent(ctx, h, differencing: type == .differencing, into: &info, fs: &fs)
      }
    }
    info.formatSpecific = fs
    return Parsed(footer: footer, headCopy: headCopy, tailCopy: tailCopy, header: header, info: info)
  }

  /// The guest-visible size. The spec defines current size as the disk's size "from the perspective
  /// of the virtual machine", so that is the answer, except for the creators that define a disk by
  /// its CHS geometry and present only CHS x 512 to the guest: Virtual PC ("vpc "), Virtual Server
  /// ("vs  ", the same IDE emulation) and qemu's legacy mode ("qemu", which writes current size =
  /// CHS x 512 itself). Images at the maximum
  /// geometry keep their size in current size (65535/16/255 cannot express more). A fixed disk's
  /// data area is current size bytes, so that is its size.
  ///
  /// qemu (block/vpc.c) uses CHS for every creator not on its list of current-size writers ("win ",
  /// "qem2", "d2v ", "CTXS", "tap\0"), which truncates images from other tools such as VirtualBox
  /// ("vbox"), whose own reader uses current size.
  static func virtualSize(_ f: Footer, type: DiskType) -> (UInt64, String?) {
    let chsBytes = f.chsSectors * 512
    let app = f.creatorApp
    let geometryDefined = app == Array("vpc ".utf8) || app == Array("vs  ".utf8) || app == Array("qemu".utf8)
    let qemuCurrentSizeCreators: [[UInt8]] = [Array("win ".utf8), Array("qem2".utf8), Array("d2v ".utf8),
                                               Array("CTXS".utf8), [0x74, 0x61, 0x70, 0x00]]
    let maxGeometry = f.chsSectors == Limits.maxGeometrySectors
    let qemuUsesCHS = !qemuCurrentSizeCreators.contains(app) && !maxGeometry
    let creator = "\"\(f.creatorAppText)\""
    if type != .fixed, geometryDefined, !maxGeometry {
      let note = chsBytes == f.currentSize ? nil
        : "virtual size is the CHS geometry \(f.cylinders)/\(f.heads)/\(f.sectorsPerTrack) x 512 = \(chsBytes) bytes, not the footer's current size \(f.currentSize): creator \(creator) presents the geometry to the guest"
      return (chsBytes, note)
    }
    guard chsBytes != f.currentSize else { return (f.currentSize, nil) }
    var note = "virtual size is the footer's current size \(f.currentSize) bytes; the CHS geometry \(f.cylinders)/\(f.heads)/\(f.sectorsPerTrack) gives \(chsBytes)"
    if maxGeometry {
      note += " (the maximum geometry, which cannot express larger disks)"
    } else if type == .fixed {
      note += " (a fixed disk's data area is current size bytes)"
    }
    if qemuUsesCHS {
      note += "; qemu-img reports \(chsBytes) because it uses the geometry for creator \(creator)"
    }
    return (f.currentSize, note)
  }

  static func readDynamicHeader(_ ctx: ProbeContext, footer: Footer) throws(ImageError) -> DynamicHeader {
    let at = footer.dataOffset
    guard at <= ctx.size, UInt64(Limits.dynamicHeaderSize) <= ctx.size - at else {
      throw ImageError(.truncated, format: format, field: "data offset", offset: footer.offset + 16,
                       "is \(hex(at)), beyond the end of the input (\(ctx.size) bytes): no room for the dynamic header",
                       finding: "vhd.truncated")
    }
    let r = try ctx.reader(at: at, count: Limits.dynamicHeaderSize, format, "dynamic disk header")
    let h = try DynamicHeader.decode(r)
    let bs = UInt64(h.blockSize)
    guard Checked.isPowerOfTwo(bs), bs >= Limits.minBlockSize, bs <= Limits.maxBlockSize else {
      throw ImageError(.invalidField, format: format, field: "block size", offset: at + 32,
                       "is \(h.blockSize), expected a power of two from \(Limits.minBlockSize) to \(Limits.maxBlockSize)")
    }
    _ = try Checked.table(offset: h.tableOffset, count: UInt64(h.maxTableEntries), entrySize: 4,
                          maxBytes: Limits.maxTableEntries * 4, inputSize: ctx.size, format, "block allocation table",
                          at: at + 16)
    return h
  }

  /// Parent UUID, name and locators: recorded as external references, never opened.
  static func describeParent(_ ctx: ProbeContext, _ h: DynamicHeader, differencing: Bool, into info: inout ImageInfo,
                             fs: inout JSONObject) throws(ImageError)
  {
    fs.set("parent-uuid", h.parentUUID)
    fs.set("parent-timestamp", UInt64(h.parentTimestamp))
    fs.set("parent-timestamp-utc", utc(h.parentTimestamp))
    if !h.parentName.isEmpty {
      fs.set("parent-name", h.parentName)
      info.externalReferences.append(ExternalReference(kind: "parent-name", name: h.parentName, offset: h.offset + 64))
    }
    if differencing {
      info.backingFilename = h.parentName.isEmpty ? nil : h.parentName
      info.findings.append(Finding("vhd.differencing", .unsafe, field: "disk type",
                                   "vhd: differencing disk: its unallocated sectors come from a parent image (\(h.parentName.isEmpty ? "unnamed" : h.parentName), uuid \(h.parentUUID)) outside this file",
                                   fix: "merge the disk into its parent with the hypervisor's tools; qemu ignores VHD parents, so qemu-img convert would silently drop the parent's data"))
      info.notes.append("qemu's vpc driver ignores the parent of a differencing VHD and reads unallocated sectors as zeros")
    }
    var locators: [JSON] = []
    for l in h.locators where l.isUsed {
      var o = JSONObject()
      o.set("platform-code", l.platformName)
      o.set("data-space", UInt64(l.dataSpace))
      o.set("data-length", UInt64(l.dataLength))
      o.set("data-offset", l.dataOffset)
      var name: String?
      if l.dataLength > 0, l.dataLength <= UInt32(Limits.maxLocatorBytes), l.dataOffset <= ctx.size,
         UInt64(l.dataLength) <= ctx.size - l.dataOffset
      {
        let data = try ctx.reader(at: l.dataOffset, count: Int(l.dataLength), format,
                                  "parent locator \(l.index) platform data")
        name = l.decode(data.bytes[...])
      }
      o.set("name", name)
      locators.append(o.json)
      if let name { info.externalReferences.append(ExternalReference(kind: "parent-locator", name: name, offset: l.dataOffset)) }
      let what = name.map { "names \"\($0)\"" }
        ?? "points at \(l.dataLength) bytes at \(hex(l.dataOffset)), outside the file or beyond \(Limits.maxLocatorBytes) bytes"
      info.findings.append(Finding("vhd.parent-locator", differencing ? .unsafe : .warning,
                                   field: "parent locator \(l.index)", offset: l.entryOffset,
                                   "vhd: parent locator \(l.index) (\(l.platformName)) at \(hex(l.entryOffset)) \(what)\(differencing ? ": a reader following it opens a file outside the image" : " in a disk that is not differencing")"))
    }
    if !locators.isEmpty { fs.set("parent-locators", JSON.array(locators)) }
  }

  // MARK: deep check

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var report = CheckReport()
    var checkErrors: UInt64 = 0
    // Every problem is counted; the first `Limits.maxListedFindings` are listed.
    var cap = FindingCap(format: "vhd", limit: Limits.maxListedFindings)
    func add(_ severity: Severity, _ f: @autoclosure () -> Finding) { cap.admit(severity, f, into: &report.findings) }
    let parsed: Parsed
    do {
      guard let p = try parse(ctx) else {
        report.counts.set("check-errors", UInt64(1))
        return report
      }
      parsed = p
    } catch {
      add(error.kind == .needsSeekable ? .warning : .corrupt, Finding(corrupt: error))
      report.counts.set("corruptions", cap.corruptions)
      report.counts.set("check-errors", UInt64(error.kind == .needsSeekable ? 1 : 0))
      return report
    }
    let footer = parsed.footer
    switch footer.diskType {
    case .fixed?:
      // The data area must be exactly current size bytes before the footer.
      if footer.currentSize < footer.offset {
        add(.warning, Finding("vhd.trailing-data", .warning, field: "current size", offset: footer.offset + 48,
                    "vhd: \(footer.offset - footer.currentSize) bytes lie between the fixed disk's data (\(footer.currentSize) bytes) and the footer at \(hex(footer.offset))"))
      }
    case .dynamic?, .differencing?:
      if let h = parsed.header {
        checkFooterCopies(ctx, parsed, add)
        var counts = JSONObject()
        var always: [Finding] = []
        checkBAT(ctx, parsed, h, add, &counts, &checkErrors) { always.append($0) }
        report.findings += always
        for (k, v) in counts.pairs { report.counts.set(k, v) }
      }
    case nil:
      break
    }
    report.counts.set("corruptions", cap.corruptions)
    report.counts.set("leaks", UInt64(0))
    report.counts.set("check-errors", checkErrors)
    return report
  }

  /// A dynamic disk keeps identical footers at offset 0 and at the end (spec: the copy at the
  /// beginning is for redundancy).
  static func checkFooterCopies(_ ctx: ProbeContext, _ p: Parsed, _ add: (Severity, @autoclosure () -> Finding) -> Void) {
    guard let head = p.headCopy else {
      add(.corrupt, Finding("vhd.footer-mismatch", .corrupt, field: "hard disk footer", offset: 0,
                  "vhd: the \(p.footer.diskType?.name ?? "") disk has no footer copy at offset 0"))
      return
    }
    guard let tail = p.tailCopy, tail.offset != 0 else {
      add(.corrupt, Finding("vhd.footer-mismatch", .corrupt, field: "hard disk footer", offset: ctx.size >= 512 ? ctx.size - 512 : 0,
                  "vhd: the footer at the end of the file is missing (truncated or overwritten); only the copy at offset 0 remains"))
      return
    }
    if head.raw != tail.raw {
      let first = zip(head.raw, tail.raw).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
      add(.corrupt, Finding("vhd.footer-mismatch", .corrupt, field: "hard disk footer", offset: tail.offset + UInt64(first),
                  "vhd: the footer at \(hex(tail.offset)) differs from the copy at offset 0 (first at byte \(first))"))
    }
  }

  /// Every allocated block (bitmap + data) must lie inside the file, before the trailing footer,
  /// clear of the metadata, and must not share bytes with another block.
  static func checkBAT(_ ctx: ProbeContext, _ p: Parsed, _ h: DynamicHeader, _ add: (Severity, @autoclosure () -> Finding) -> Void,
                       _ counts: inout JSONObject, _ checkErrors: inout UInt64, listAlways: (Finding) -> Void)
  {
    let size = ctx.size
    let blockSize = UInt64(h.blockSize)
    let span = h.bitmapSize + blockSize
    // The data area ends where the trailing footer starts.
    let dataEnd = p.tailCopy.map { $0.offset } ?? size
    let entries = UInt64(h.maxTableEntries)
    let tableBytes = entries * 4
    let tableEnd = h.tableOffset + Checked.ceilDiv(tableBytes, 512) * 512
    // Metadata ranges blocks must not touch.
    var metadata: [(String, UInt64, UInt64)] = [
      ("dynamic disk header", h.offset, h.offset + UInt64(Limits.dynamicHeaderSize)),
      ("block allocation table", h.tableOffset, tableEnd),
    ]
    if p.headCopy != nil { metadata.append(("footer copy", 0, UInt64(Limits.footerSize))) }
    for l in h.locators where l.isUsed && l.dataOffset < size {
      let len = min(l.reservedBytes, size - l.dataOffset)
      if len > 0 { metadata.append(("parent locator \(l.index) data", l.dataOffset, l.dataOffset + len)) }
    }
    let virtualBlocks = Checked.ceilDiv(p.info.virtualSize ?? 0, blockSize)
    var allocated: UInt64 = 0
    var tracked: [UInt64] = []
    var trackingComplete = true
    var index: UInt64 = 0
    while index < entries {
      let n = min(UInt64(Limits.batChunkBytes / 4), entries - index)
      let at = h.tableOffset + index * 4
      let chunk: [UInt8]
      do {
        chunk = try ctx.source.readExactly(at: at, count: Int(n * 4), format: format, field: "block allocation table")
      } catch {
        add(error.kind == .needsSeekable ? .warning : .corrupt, Finding(corrupt: error, id: error.kind == .truncated ? "vhd.truncated" : error.kind == .needsSeekable ? "vhd.needs-seekable" : nil))
        checkErrors += 1
        break
      }
      chunk.withUnsafeBytes { buf in
        for k in 0..<Int(n) {
          let sector = UInt32(bigEndian: buf.loadUnaligned(fromByteOffset: k * 4, as: UInt32.self))
          if sector == 0xFFFF_FFFF { continue }
          let i = index + UInt64(k)
          allocated += 1
          let start = UInt64(sector) * 512
          let end = start + span  // cannot overflow: start < 2^41, span <= 2^29
          let entryOffset = h.tableOffset + i * 4
          if start >= dataEnd {
            add(.corrupt, Finding("vhd.bat-out-of-range", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                           "vhd: BAT entry \(i) at \(hex(entryOffset)) points at sector \(sector) (\(hex(start))), beyond the data area ending at \(hex(dataEnd))"))
            continue
          }
          if end > dataEnd {
            add(.corrupt, Finding("vhd.truncated", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                           "vhd: block \(i) at \(hex(start)) needs \(span) bytes but the data area ends at \(hex(dataEnd)) (truncated)"))
          }
          if i >= virtualBlocks {
            add(.warning, Finding("vhd.bat-out-of-range", .warning, field: "BAT entry \(i)", offset: entryOffset,
                           "vhd: BAT entry \(i) is allocated but lies beyond the virtual size (\(virtualBlocks) blocks)"))
          }
          for (name, ms, me) in metadata where start < me && ms < end {
            add(.corrupt, Finding("vhd.block-overlap", .corrupt, field: "BAT entry \(i)", offset: entryOffset,
                           "vhd: block \(i) at \(hex(start))..\(hex(end)) overlaps the \(name) at \(hex(ms))"))
          }
          if tracked.count < Limits.maxTrackedBlocks {
            // Sector number in the high bits, entry index is not needed: blocks all have one span.
            tracked.append(UInt64(sector))
          } else {
            trackingComplete = false
          }
        }
      }
      index += n
    }
    // Overlapping blocks: sorted starts closer than one block span apart.
    tracked.sort()
    let spanSectors = span / 512
    if tracked.count > 1 {
      for j in 1..<tracked.count where tracked[j] - tracked[j - 1] < spanSectors {
        add(.corrupt, Finding("vhd.block-overlap", .corrupt, field: "block allocation table",
                      offset: tracked[j] * 512,
                      tracked[j] == tracked[j - 1]
                        ? "vhd: two BAT entries point at the same block at \(hex(tracked[j] * 512))"
                        : "vhd: blocks at \(hex(tracked[j - 1] * 512)) and \(hex(tracked[j] * 512)) overlap (a block spans \(span) bytes)"))
      }
    }
    if !trackingComplete {
      // Always listed, past the listing cap: it says the check itself was partial.
      listAlways(Finding("vhd.check-incomplete", .warning,
                  "vhd: more than \(Limits.maxTrackedBlocks) allocated blocks: overlap detection covered the first \(Limits.maxTrackedBlocks)"))
      checkErrors += 1
    }
    counts.set("allocated-clusters", allocated)
    counts.set("total-clusters", virtualBlocks)
  }
}
