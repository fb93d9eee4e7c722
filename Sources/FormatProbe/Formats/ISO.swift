/// ISO 9660 (ECMA-119 4th edition), its El Torito boot catalog (El Torito Bootable CD-ROM Format
/// Specification 1.0), Joliet and Rock Ridge extensions, and UDF (ECMA-167 / OSTA UDF) volume
/// recognition, including UDF-only discs.
///
/// Layout: sectors of 2048 bytes. Sectors 0-15 are the *system area* (unused by ISO 9660; hybrid
/// ISOs put an MBR/GPT there, which the partition-table probe reports). From sector 16 follows the
/// volume descriptor set (each descriptor one sector: type (1), "CD001" (5), version (1)),
/// ended by a terminator (type 255), optionally followed by the UDF volume recognition sequence
/// ("BEA01", "NSR02"/"NSR03", "TEA01"). UDF's anchor volume descriptor pointer is at sector 256.
///
/// qemu has no ISO driver: it reads ISOs as raw, so `format` is `raw` and the virtual size is the
/// file size. The volume size the descriptor declares is reported in `format-specific`.
public enum ISOProbe: FormatProbe {
  public static let id = "iso"
  public static let role = ProbeRole.image

  public enum Limits {
    /// ISO 9660 and UDF volume recognition use 2048-byte sectors on every medium (ECMA-119 6.1.2).
    public static let sectorSize = 2048
    /// The volume descriptor set starts at sector 16, after the 32 KiB system area (ECMA-119 6.2.1).
    public static let firstDescriptor = 16
    /// Descriptors read at most. Real discs carry 3 to 8 (primary, boot record, Joliet, enhanced,
    /// terminator, UDF's BEA01/NSR/TEA01); Linux isofs and libisofs read until the terminator, so a
    /// cap is needed against a crafted image that never ends the set. 64 sectors = 128 KiB.
    public static let maxDescriptors = 64
    /// Boot catalog bytes read: El Torito entries are 32 bytes, so 4 sectors hold 256 entries,
    /// far more than any real disc (xorriso allows 32 boot images).
    public static let maxBootCatalogBytes = 4 * 2048
    /// UDF anchor volume descriptor pointer location (ECMA-167 3/8.4.2.1: sector 256).
    public static let udfAnchorSector: UInt64 = 256
    /// UDF main volume descriptor sequence bytes read: ECMA-167 requires at least 16 sectors;
    /// 64 sectors covers every real sequence.
    public static let maxUDFSequenceBytes = 64 * 2048
    /// System area bytes searched for other formats' magic: sectors 0-15, the only bytes of an
    /// ISO that ECMA-119 leaves free for any use (6.2.1), where another header can hide.
    public static let systemAreaBytes = 32 * 1024
  }

  static let cd001 = Array("CD001".utf8)
  static let recognition: Set<String> = ["BEA01", "NSR02", "NSR03", "TEA01", "BOOT2", "CDW02"]

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let head = ctx.headReader("iso")
    let first = Limits.firstDescriptor * Limits.sectorSize
    guard head.matches(cd001, at: first + 1) || head.matches(Array("BEA01".utf8), at: first + 1)
      || head.matches(Array("NSR02".utf8), at: first + 1) || head.matches(Array("NSR03".utf8), at: first + 1)
    else { return nil }

    var info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .iso, virtualSize: ctx.size)
    let walk = try descriptors(ctx, into: &info)
    var fs = JSONObject()
    var types: [String] = []

    if let pvd = walk.primary {
      types.append("iso9660")
      try primary(ctx, pvd, into: &info, fs: &fs)
    } else if walk.sawCD001 {
      throw ImageError(.invalidField, format: "iso", field: "primary volume descriptor", offset: UInt64(first),
                       "is missing: the descriptor set has no type 1 descriptor", finding: "iso.no-primary")
    }
    if let joliet = walk.jolietLevel {
      fs.set("joliet", true)
      fs.set("joliet-level", joliet)
    } else if walk.primary != nil {
      fs.set("joliet", false)
    }
    do {
      if let boot = walk.bootRecord { fs.set("el-torito", try elTorito(ctx, boot, into: &info)) }
      if let nsr = walk.nsr {
        types.append("udf")
        fs.set("udf", try udf(ctx, nsr: nsr, into: &info))
      }
    } catch where error.kind == .needsSeekable {
      info.findings.append(Finding("iso.needs-seekable", .warning, offset: error.offset,
                                   "the boot catalog or UDF descriptors lie beyond the bytes a stream keeps and were not checked (pass a file)"))
    }
    fs.set("descriptors", JSON.array(walk.kinds.map { .string($0) }))
    info.subformat = types.joined(separator: "+")
    embedded(head, into: &info)
    info.formatSpecific = fs
    return info
  }

  // MARK: volume descriptor set

  struct Walk {
    var primary: ByteReader?
    var bootRecord: ByteReader?
    var jolietLevel: Int?
    var nsr: String?
    var sawCD001 = false
    var kinds: [String] = []
  }

  /// One descriptor sector: from the head when it is there, else read.
  static func sector(_ ctx: ProbeContext, _ n: Int, _ field: String) throws(ImageError) -> ByteReader {
    try ctx.reader(at: UInt64(n) * UInt64(Limits.sectorSize), count: Limits.sectorSize, "iso", field)
  }

  /// Walks the descriptor set and the UDF recognition sequence, bounded by `Limits.maxDescriptors`.
  static func descriptors(_ ctx: ProbeContext, into info: inout ImageInfo) throws(ImageError) -> Walk {
    var w = Walk()
    var terminated = false
    var ended = false
    for i in 0..<Limits.maxDescriptors {
      let n = Limits.firstDescriptor + i
      let r: ByteReader
      do {
        r = try sector(ctx, n, "volume descriptor \(n)")
      } catch where error.kind == .truncated {
        // After the terminator the walk only looks for a UDF recognition sequence.
        if !terminated {
          info.findings.append(Finding("iso.truncated", .corrupt, offset: UInt64(n * Limits.sectorSize),
                                       "the file ends inside the volume descriptor set (sector \(n))"))
        }
        ended = true
        break
      }
      let type = try r.u8(at: 0, "descriptor type")
      let ident = Text.ascii(try r.bytes(at: 1, 5, "standard identifier"))
      if ident == "CD001" {
        w.sawCD001 = true
        switch type {
        case 0:
          w.kinds.append("boot-record")
          if r.matches(Array("EL TORITO SPECIFICATION".utf8), at: 7), w.bootRecord == nil { w.bootRecord = r }
        case 1:
          w.kinds.append("primary")
          if w.primary == nil { w.primary = r }
        case 2:
          // Joliet: a supplementary descriptor whose escape sequences (at 88) are %/@, %/C or %/E.
          let level: [UInt8: Int] = [0x40: 1, 0x43: 2, 0x45: 3]
          if r.matches([0x25, 0x2F], at: 88), let l = level[try r.u8(at: 90, "escape sequences")] {
            w.kinds.append("joliet")
            w.jolietLevel = max(w.jolietLevel ?? 0, l)
          } else {
            w.kinds.append(try r.u8(at: 6, "version") == 2 ? "enhanced" : "supplementary")
          }
        case 3: w.kinds.append("partition")
        case 255:
          w.kinds.append("terminator")
          terminated = true
        default: w.kinds.append("unknown-\(type)")
        }
      } else if recognition.contains(ident) {
        w.kinds.append(ident)
        if ident.hasPrefix("NSR") { w.nsr = ident }
        if ident == "TEA01" { ended = true; break }
      } else {
        ended = true
        break
      }
    }
    if !ended {
      info.findings.append(Finding("iso.descriptor-limit", .corrupt, offset: UInt64(Limits.firstDescriptor * Limits.sectorSize),
                                   "the volume descriptor set does not end within \(Limits.maxDescriptors) sectors; the rest is not read"))
    } else if w.sawCD001, !terminated {
      info.findings.append(Finding("iso.descriptor-terminator", .corrupt, offset: UInt64(Limits.firstDescriptor * Limits.sectorSize),
                                   "the ISO 9660 volume descriptor set has no terminator (type 255) before the first non-descriptor sector"))
    }
    return w
  }

  // MARK: primary volume descriptor

  /// Primary volume descriptor (ECMA-119 8.4). Both-endian fields hold the value little-endian
  /// then big-endian; the two halves must agree (ECMA-119 7.2.3, 7.3.3).
  ///
  /// | offset | size | field |
  /// |---|---|---|
  /// | 0 | 1 | type (1) |
  /// | 1 | 5 | "CD001" |
  /// | 8 | 32 | system identifier |
  /// | 40 | 32 | volume identifier |
  /// | 80 | 8 | volume space size (blocks, both-endian 32) |
  /// | 120 | 4 | volume set size (both-endian 16) |
  /// | 124 | 4 | volume sequence number (both-endian 16) |
  /// | 128 | 4 | logical block size (both-endian 16) |
  /// | 132 | 8 | path table size (both-endian 32) |
  /// | 156 | 34 | root directory record |
  /// | 190 | 128 | volume set identifier |
  /// | 318 | 128 | publisher identifier |
  /// | 446 | 128 | data preparer identifier |
  /// | 574 | 128 | application identifier |
  /// | 813 | 17 | volume creation date and time |
  /// | 830 | 17 | volume modification date and time |
  static func primary(_ ctx: ProbeContext, _ r: ByteReader, into info: inout ImageInfo, fs: inout JSONObject) throws(ImageError) {
    func text(_ at: Int, _ n: Int, _ field: String) throws(ImageError) -> String? {
      let s = Text.ascii(try r.bytes(at: at, n, field))
      return s.isEmpty ? nil : s
    }
    func both32(_ at: Int, _ field: String, finding: String) throws(ImageError) -> UInt32 {
      let le = try r.u32LE(at: at, field), be = try r.u32BE(at: at + 4, field)
      if le != be {
        info.findings.append(Finding(finding, .corrupt, field: field, offset: r.base + UInt64(at),
                                     "iso: \(field) at \(hex(r.base + UInt64(at))) is \(le) little-endian but \(be) big-endian; readers disagree on it"))
      }
      return le
    }
    func both16(_ at: Int, _ field: String) throws(ImageError) -> UInt16 {
      let le = try r.u16LE(at: at, field), be = try r.u16BE(at: at + 2, field)
      if le != be {
        info.findings.append(Finding("iso.both-endian-mismatch", .corrupt, field: field, offset: r.base + UInt64(at),
                                     "iso: \(field) at \(hex(r.base + UInt64(at))) is \(le) little-endian but \(be) big-endian; readers disagree on it"))
      }
      return le
    }
    fs.set("system-id", try text(8, 32, "system identifier"))
    fs.set("volume-id", try text(40, 32, "volume identifier"))
    let blocks = try both32(80, "volume space size", finding: "iso.volume-size-mismatch")
    _ = try both16(120, "volume set size")
    _ = try both16(124, "volume sequence number")
    let blockSize = try both16(128, "logical block size")
    _ = try both32(132, "path table size", finding: "iso.both-endian-mismatch")
    fs.set("volume-set-id", try text(190, 128, "volume set identifier"))
    fs.set("publisher-id", try text(318, 128, "publisher identifier"))
    fs.set("preparer-id", try text(446, 128, "data preparer identifier"))
    fs.set("application-id", try text(574, 128, "application identifier"))
    fs.set("creation-date", date(try r.bytes(at: 813, 17, "volume creation date")))
    fs.set("modification-date", date(try r.bytes(at: 830, 17, "volume modification date")))
    fs.set("logical-block-size", UInt64(blockSize))
    fs.set("volume-space-size", UInt64(blocks))
    // ECMA-119 6.1.2: the logical block size is 2^n, at least 512 and at most the sector size.
    guard [512, 1024, 2048].contains(blockSize) else {
      info.findings.append(Finding("iso.block-size", .corrupt, field: "logical block size", offset: r.base + 128,
                                   "iso: logical block size is \(blockSize), must be 512, 1024 or 2048"))
      return
    }
    let volume = UInt64(blocks) * UInt64(blockSize)
    fs.set("volume-size", volume)
    if volume > ctx.size {
      info.findings.append(Finding("iso.truncated", .corrupt, field: "volume space size", offset: r.base + 80,
                                   "the volume declares \(volume) bytes (\(blocks) blocks of \(blockSize)) but the file has \(ctx.size): it is truncated"))
    } else if volume < ctx.size {
      fs.set("trailing-bytes", ctx.size - volume)
      info.notes.append("\(ctx.size - volume) bytes follow the ISO 9660 volume (padding or appended partitions); the virtual size is the file size, as qemu's raw driver reads it")
    }
    // Rock Ridge is a description, not a structure to validate: an unreadable root directory
    // (truncated file, a stream past its head) leaves the key out.
    fs.set("rock-ridge", try? rockRidge(ctx, r, blockSize: UInt64(blockSize)))
  }

  /// dec-datetime (ECMA-119 8.4.26.1): 16 ASCII digits YYYYMMDDHHMMSScc and a signed offset from
  /// GMT in 15-minute steps. All-zero digits mean "not specified".
  static func date(_ b: ArraySlice<UInt8>) -> String? {
    let d = Array(b)
    guard d.count == 17, d[0..<16].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), !d[0..<16].allSatisfy({ $0 == 0x30 })
    else { return nil }
    let s = String(decoding: d[0..<16], as: UTF8.self)
    func part(_ a: Int, _ n: Int) -> Substring {
      let i = s.index(s.startIndex, offsetBy: a)
      return s[i..<s.index(i, offsetBy: n)]
    }
    let tz = Int(Int8(bitPattern: d[16])) * 15
    let sign = tz < 0 ? "-" : "+"
    let h = abs(tz) / 60, m = abs(tz) % 60
    return "\(part(0, 4))-\(part(4, 2))-\(part(6, 2))T\(part(8, 2)):\(part(10, 2)):\(part(12, 2)).\(part(14, 2))"
      + "\(sign)\(h < 10 ? "0" : "")\(h):\(m < 10 ? "0" : "")\(m)"
  }

  /// Rock Ridge: the root directory's "." record carries a SUSP "SP" entry (BE EF check bytes)
  /// and Rock Ridge entries (PX, RR or an ER naming RRIP) in its system use area (SUSP 1.12, RRIP 1.12).
  static func rockRidge(_ ctx: ProbeContext, _ pvd: ByteReader, blockSize: UInt64) throws(ImageError) -> Bool {
    let extent = UInt64(try pvd.u32LE(at: 156 + 2, "root directory extent"))
    let (offset, o) = extent.multipliedReportingOverflow(by: blockSize)
    guard !o, offset < ctx.size, ctx.size - offset >= 256 else { return false }
    let dir = try ctx.reader(at: offset, count: 256, "iso", "root directory record")
    let length = Int(try dir.u8(at: 0, "directory record length"))
    let nameLength = Int(try dir.u8(at: 32, "file identifier length"))
    var at = 33 + nameLength + (nameLength % 2 == 0 ? 1 : 0)
    guard length <= 255, at + 7 <= length, dir.matches(Array("SP".utf8), at: at),
          dir.matches([0xBE, 0xEF], at: at + 4)
    else { return false }
    // Each SUSP entry: signature (2), length (1), version (1); a length under 4 ends the walk.
    while at + 4 <= length {
      let sig = Text.ascii(try dir.bytes(at: at, 2, "SUSP signature"))
      let n = Int(try dir.u8(at: at + 2, "SUSP length"))
      if sig == "PX" || sig == "RR" { return true }
      if sig == "ER", n >= 8 {
        let idLength = Int(try dir.u8(at: at + 4, "ER identifier length"))
        if let ident = try? dir.bytes(at: at + 8, idLength, "ER identifier") {
          let s = Text.ascii(ident)
          if s.hasPrefix("RRIP") || s.hasPrefix("IEEE_P1282") || s.hasPrefix("IEEE_1282") { return true }
        }
      }
      guard n >= 4 else { break }
      at += n
    }
    return false
  }

  // MARK: El Torito

  static let platforms: [UInt8: String] = [0x00: "x86", 0x01: "powerpc", 0x02: "mac", 0xEF: "efi"]
  static let emulations = ["no-emulation", "floppy-1.2M", "floppy-1.44M", "floppy-2.88M", "hard-disk"]
  /// Bytes an emulated floppy image occupies (El Torito 2.0, media types 1-3).
  static let floppyBytes: [UInt64] = [0, 1_228_800, 1_474_560, 2_949_120, 0]

  /// Boot record (El Torito 2.0): boot system identifier "EL TORITO SPECIFICATION" at 7, boot
  /// catalog sector (4, LE) at 71. The catalog is a list of 32-byte entries:
  ///
  /// Validation entry: header id 0x01 (0), platform (1), id string (4..27), checksum (28, the
  /// 16-bit little-endian words of the entry sum to zero), key bytes 0x55 0xAA (30).
  /// Initial/default entry and section entries: boot indicator 0x88/0x00 (0), media type (1, low
  /// nibble), load segment (2, LE; 0 means 0x7C0), system type (4), sector count (6, LE, 512-byte
  /// virtual sectors), load RBA (8, LE). Section header: 0x90 (more follow) or 0x91 (final) (0),
  /// platform (1), entry count (2, LE), id string (4..31). Extension entries (0x44) follow an
  /// entry they extend.
  static func elTorito(_ ctx: ProbeContext, _ boot: ByteReader, into info: inout ImageInfo) throws(ImageError) -> JSON {
    var o = JSONObject()
    let catalogLBA = UInt64(try boot.u32LE(at: 71, "boot catalog pointer"))
    o.set("catalog-lba", catalogLBA)
    let offset = catalogLBA * UInt64(Limits.sectorSize)
    guard offset < ctx.size, ctx.size - offset >= 32 else {
      info.findings.append(Finding("iso.boot-catalog-range", .corrupt, field: "boot catalog pointer", offset: boot.base + 71,
                                   "the El Torito boot catalog is at sector \(catalogLBA), beyond the end of the file"))
      return o.json
    }
    let bytes = try ctx.read(at: offset, count: Limits.maxBootCatalogBytes)
    let cat = ByteReader(bytes, base: offset, format: "iso")
    // Validation entry.
    let headerID = try cat.u8(at: 0, "validation entry header id")
    guard headerID == 0x01, cat.matches([0x55, 0xAA], at: 30) else {
      info.findings.append(Finding("iso.boot-catalog-invalid", .corrupt, field: "validation entry", offset: offset,
                                   "the El Torito validation entry at \(hex(offset)) has header id \(hex(headerID)) and key bytes other than 55 AA: not a boot catalog"))
      return o.json
    }
    var sum: UInt16 = 0
    for i in 0..<16 { sum &+= try cat.u16LE(at: 2 * i, "validation entry") }
    if sum != 0 {
      info.findings.append(Finding("iso.boot-catalog-checksum", .corrupt, field: "validation entry checksum", offset: offset + 28,
                                   "the El Torito validation entry's words sum to \(hex(sum)), not 0: firmware rejects the boot catalog"))
    }
    let platform = try cat.u8(at: 1, "platform id")
    o.set("platform", platforms[platform] ?? hex(platform))
    let ident = Text.ascii(try cat.bytes(at: 4, 24, "id string"))
    o.set("id", ident.isEmpty ? nil : ident)
    var entries: [JSON] = []
    let available = bytes.count / 32
    func entry(_ index: Int, platform: UInt8) throws(ImageError) {
      let at = index * 32
      let indicator = try cat.u8(at: at, "boot indicator")
      let media = try cat.u8(at: at + 1, "boot media type") & 0x0F
      let segment = try cat.u16LE(at: at + 2, "load segment")
      let count = try cat.u16LE(at: at + 6, "sector count")
      let rba = try cat.u32LE(at: at + 8, "load RBA")
      var e = JSONObject()
      e.set("bootable", indicator == 0x88)
      e.set("platform", platforms[platform] ?? hex(platform))
      e.set("emulation", Int(media) < emulations.count ? emulations[Int(media)] : "unknown-\(media)")
      e.set("load-segment", hex(segment == 0 ? 0x7C0 : segment))
      e.set("system-type", hex(try cat.u8(at: at + 4, "system type")))
      e.set("sector-count", UInt64(count))
      e.set("load-rba", UInt64(rba))
      entries.append(e.json)
      // The boot image must be inside the file (floppy emulation: the whole floppy image).
      let start = UInt64(rba) * UInt64(Limits.sectorSize)
      let need = Int(media) < floppyBytes.count && floppyBytes[Int(media)] > 0 ? floppyBytes[Int(media)] : UInt64(count) * 512
      if start >= ctx.size || need > ctx.size - start {
        info.findings.append(Finding("iso.boot-image-range", .corrupt, field: "load RBA", offset: offset + UInt64(at) + 8,
                                     "El Torito boot entry \(entries.count) loads \(need) bytes from sector \(rba), beyond the end of the file"))
      }
    }
    if available >= 2 { try entry(1, platform: platform) }
    // Section headers with their entries, bounded by the catalog bytes read.
    var i = 2
    var finalSeen = false
    while i < available, !finalSeen {
      let indicator = try cat.u8(at: i * 32, "section header indicator")
      guard indicator == 0x90 || indicator == 0x91 else { break }
      finalSeen = indicator == 0x91
      let sectionPlatform = try cat.u8(at: i * 32 + 1, "section platform id")
      let count = Int(try cat.u16LE(at: i * 32 + 2, "section entry count"))
      i += 1
      var read = 0
      while read < count {
        guard i < available else {
          info.findings.append(Finding("iso.boot-catalog-limit", .corrupt, field: "section entry count", offset: offset + UInt64(i * 32),
                                       "an El Torito section declares \(count) entries; the catalog ends (or imgtool's \(Limits.maxBootCatalogBytes)-byte limit is reached) before them"))
          break
        }
        try entry(i, platform: sectionPlatform)
        i += 1
        read += 1
        while i < available, try cat.u8(at: i * 32, "extension indicator") == 0x44 { i += 1 }
      }
    }
    o.set("entries", JSON.array(entries))
    return o.json
  }

  // MARK: UDF

  /// UDF recognition: the NSR descriptor names the ECMA-167 edition (NSR02: UDF 1.02-1.50; NSR03:
  /// UDF 2.00 and later). The anchor volume descriptor pointer at sector 256 (descriptor tag id 2;
  /// tag: id (2), version (2), checksum (1, sum of tag bytes 0-3 and 5-15), serial (2), CRC (2),
  /// CRC length (2), location (4)) points at the main volume descriptor sequence (length (4) at
  /// 16, location (4) at 20). There the primary volume descriptor (tag 1) holds the volume
  /// identifier (dstring, 32 bytes at 24) and the logical volume descriptor (tag 6) the domain
  /// identifier (regid at 216, "*OSTA UDF Compliant" with the UDF revision, LE BCD, at 216 + 24).
  static func udf(_ ctx: ProbeContext, nsr: String, into info: inout ImageInfo) throws(ImageError) -> JSON {
    var o = JSONObject()
    o.set("nsr", nsr)
    let sector = UInt64(Limits.sectorSize)
    let anchorOffset = Limits.udfAnchorSector * sector
    guard anchorOffset < ctx.size, ctx.size - anchorOffset >= 512 else {
      info.findings.append(Finding("iso.udf-anchor", .warning, offset: anchorOffset,
                                   "the UDF recognition sequence names \(nsr) but the file ends before the anchor at sector 256"))
      return o.json
    }
    let anchor = try ctx.reader(at: anchorOffset, count: 512, "iso", "UDF anchor volume descriptor pointer")
    guard try tagValid(anchor, at: 0, id: 2, location: UInt32(Limits.udfAnchorSector)) else {
      info.findings.append(Finding("iso.udf-anchor", .warning, offset: anchorOffset,
                                   "no valid UDF anchor volume descriptor pointer at sector 256 (tag id 2, checksum, location)"))
      return o.json
    }
    let length = UInt64(try anchor.u32LE(at: 16, "main volume descriptor sequence length"))
    let location = UInt64(try anchor.u32LE(at: 20, "main volume descriptor sequence location"))
    let start = location * sector
    guard start < ctx.size else {
      info.findings.append(Finding("iso.udf-anchor", .warning, field: "main volume descriptor sequence location", offset: anchorOffset + 20,
                                   "the UDF anchor points its main volume descriptor sequence at sector \(location), beyond the end of the file: UDF readers cannot mount the volume"))
      return o.json
    }
    let bytes = try ctx.read(at: start, count: Int(min(length, UInt64(Limits.maxUDFSequenceBytes))))
    let seq = ByteReader(bytes, base: start, format: "iso")
    var at = 0
    while at + Limits.sectorSize <= bytes.count {
      let tag = try seq.u16LE(at: at, "descriptor tag")
      if tag == 8 || tag == 0 { break }  // terminating descriptor, or unrecorded
      if tag == 1, o.pairs.first(where: { $0.0 == "volume-id" }) == nil {
        o.set("volume-id", dstring(try seq.bytes(at: at + 24, 32, "volume identifier")))
      }
      if tag == 6, seq.matches(Array("*OSTA UDF Compliant".utf8), at: at + 216 + 1) {
        let rev = try seq.u16LE(at: at + 216 + 24, "UDF revision")
        o.set("revision", "\(rev >> 8).\(String(rev & 0xff, radix: 16).count < 2 ? "0" : "")\(String(rev & 0xff, radix: 16))")
      }
      at += Limits.sectorSize
    }
    return o.json
  }

  /// Descriptor tag (ECMA-167 3/7.2): identifier, checksum and recorded location must all agree.
  static func tagValid(_ r: ByteReader, at: Int, id: UInt16, location: UInt32) throws(ImageError) -> Bool {
    guard try r.u16LE(at: at, "tag identifier") == id else { return false }
    var sum: UInt8 = 0
    for i in 0..<16 where i != 4 { sum &+= try r.u8(at: at + i, "descriptor tag") }
    let checksum = try r.u8(at: at + 4, "tag checksum")
    let recorded = try r.u32LE(at: at + 12, "tag location")
    return sum == checksum && recorded == location
  }

  /// dstring (ECMA-167 1/7.2.12): compression id (8: one byte per character, 16: UTF-16BE), the
  /// characters, and the used length in the last byte.
  static func dstring(_ b: ArraySlice<UInt8>) -> String? {
    let d = Array(b)
    guard let used = d.last, used > 1, Int(used) <= d.count - 1 else { return nil }
    let chars = d[1..<Int(used)]
    switch d[0] {
    case 8: return Text.ascii(chars)
    case 16: return Text.utf16BE(chars)
    default: return nil
    }
  }

  // MARK: embedded formats

  /// Signatures of other disk image formats at offset 0. The ISO 9660 system area (sectors 0-15)
  /// is free for any use, so a crafted file can start with another format's header: a reader
  /// that probes the first bytes (qemu with format probing, the image service's inspector) would
  /// treat it as that format and follow whatever that header names (a backing file, extents).
  static let embeddedMagics: [(String, [UInt8], Int)] = [
    ("qcow2/qcow", [0x51, 0x46, 0x49, 0xFB], 0),
    ("vmdk (sparse)", Array("KDMV".utf8), 0),
    ("vmdk (cowd)", Array("COWD".utf8), 0),
    ("vmdk (descriptor)", Array("# Disk DescriptorFile".utf8), 0),
    ("vhdx", Array("vhdxfile".utf8), 0),
    ("vhd", Array("conectix".utf8), 0),
    ("vdi", [0x7F, 0x10, 0xDA, 0xBE], 0x40),
    ("qed", [0x51, 0x45, 0x44, 0x00], 0),
    ("luks", [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE], 0),
    ("ploop", Array("WithoutFreeSpace".utf8), 0),
    ("ploop", Array("WithouFreSpacExt".utf8), 0),
  ]

  static func embedded(_ head: ByteReader, into info: inout ImageInfo) {
    for (name, magic, at) in embeddedMagics where at < Limits.systemAreaBytes && head.matches(magic, at: at) {
      info.findings.append(Finding("iso.embedded-format", .unsafe, offset: UInt64(at),
                                   "the ISO's system area starts with a \(name) signature: a reader that probes the first bytes would open the file as \(name) instead of an ISO",
                                   fix: "rebuild the ISO with an empty or MBR/GPT-only system area"))
    }
  }
}
