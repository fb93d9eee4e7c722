/// Parallels / Virtuozzo ploop image (qemu driver `parallels`, image-service disk_format `ploop`).
///
/// References: qemu block/parallels.c and docs/interop/parallels.txt.
/// Detection: one of two 16-byte magics at 0. Header (little-endian, 64 bytes), then the block
/// allocation table (BAT) of 32-bit entries:
///
/// | off | size | field |
/// |----:|----:|---|
/// | 0 | 16 | magic `WithoutFreeSpace` (BAT in sectors) or `WithouFreSpacExt` (BAT in clusters) |
/// | 16 | 4 | version (2) |
/// | 20 | 4 | heads |
/// | 24 | 4 | cylinders |
/// | 28 | 4 | tracks: sectors per cluster |
/// | 32 | 4 | bat_entries |
/// | 36 | 8 | nb_sectors (only the low 32 bits count for `WithoutFreeSpace`) |
/// | 44 | 4 | inuse (0x746f6e59 while open) |
/// | 48 | 4 | data_off: first data sector (0: right after the BAT) |
/// | 52 | 4 | flags |
/// | 56 | 8 | ext_off: format extension cluster (sectors) |
public enum PloopProbe: DeepCheckable {
  public static let id = "ploop"
  public static let role = ProbeRole.image
  static let format = "ploop"
  static let magicOld: [UInt8] = Array("WithoutFreeSpace".utf8)
  static let magicExt: [UInt8] = Array("WithouFreSpacExt".utf8)
  static let inUseMagic: UInt32 = 0x746f_6e59

  public enum Limits {
    /// qemu: "Too big cluster" above INT32_MAX / 513 sectors per cluster.
    public static let maxTracks: UInt32 = UInt32(Int32.max) / 513
    /// qemu: "Catalog too large" above INT_MAX / 4 entries.
    public static let maxBATEntries: UInt32 = UInt32(Int32.max) / 4
    /// BAT bytes read per piece during check.
    public static let batPiece = 4 << 20
    /// Clusters tracked in the duplicate bitmap (32 MiB of bits); indices are also bounded by the
    /// file size.
    public static let maxTrackedClusters: UInt64 = 1 << 28
  }

  public struct Header: Sendable, Equatable {
    public var extended: Bool
    public var version: UInt32
    public var heads: UInt32
    public var cylinders: UInt32
    public var tracks: UInt32
    public var batEntries: UInt32
    public var nbSectors: UInt64
    public var inUse: UInt32
    public var dataOff: UInt32
    public var flags: UInt32
    public var extOff: UInt64

    static func decode(_ r: ByteReader) throws(ImageError) -> Header {
      var r = r
      let extended = r.matches(magicExt, at: 0)
      try r.skip(16, "magic")
      return Header(extended: extended, version: try r.u32LE("version"), heads: try r.u32LE("heads"),
                    cylinders: try r.u32LE("cylinders"), tracks: try r.u32LE("tracks"),
                    batEntries: try r.u32LE("bat_entries"), nbSectors: try r.u64LE("nb_sectors"),
                    inUse: try r.u32LE("inuse"), dataOff: try r.u32LE("data_off"), flags: try r.u32LE("flags"),
                    extOff: try r.u64LE("ext_off"))
    }

    /// Guest sectors: the old format keeps only 32 bits (qemu masks them).
    public var sectors: UInt64 { extended ? nbSectors : nbSectors & 0xffff_ffff }
    /// BAT entries count sectors (old) or clusters (ext).
    public var offsetMultiplier: UInt64 { extended ? UInt64(tracks) : 1 }
    public var clusterBytes: UInt64 { UInt64(tracks) * 512 }
    /// First data sector: data_off, or the sector after the BAT when 0.
    public var dataStart: UInt64 {
      dataOff != 0 ? UInt64(dataOff) : Checked.ceilDiv(64 + UInt64(batEntries) * 4, 512)
    }

    func validate() throws(ImageError) {
      guard version == 2 else {
        throw ImageError(.unsupported, format: "ploop", field: "version", offset: 16, "is \(version); only 2 is defined",
                         finding: "ploop.version")
      }
      guard tracks >= 1, tracks <= Limits.maxTracks else {
        throw ImageError(.invalidField, format: "ploop", field: "tracks", offset: 28,
                         "is \(tracks) sectors per cluster; qemu accepts 1 to \(Limits.maxTracks)", finding: "ploop.cluster-size")
      }
      guard batEntries <= Limits.maxBATEntries else {
        throw ImageError(.limitExceeded, format: "ploop", field: "bat_entries", offset: 32,
                         "is \(batEntries), limit \(Limits.maxBATEntries) (qemu's)", finding: "ploop.bat-size")
      }
      _ = try Checked.mul(sectors, 512, "ploop", "nb_sectors", at: 36)
    }
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let head = ctx.headReader(format)
    guard head.matches(magicOld, at: 0) || head.matches(magicExt, at: 0) else { return nil }
    let h = try Header.decode(try ctx.reader(at: 0, count: 64, format, "header"))
    try h.validate()
    var info = ImageInfo(probe: id, qemuFormat: "parallels", diskFormat: .ploop,
                         subformat: h.extended ? "ext" : "legacy", virtualSize: h.sectors * 512)
    info.clusterSize = h.clusterBytes
    info.dirty = h.inUse == inUseMagic
    var data = JSONObject()
    data.set("magic", h.extended ? "WithouFreSpacExt" : "WithoutFreeSpace")
    data.set("version", UInt64(h.version))
    data.set("heads", UInt64(h.heads))
    data.set("cylinders", UInt64(h.cylinders))
    data.set("tracks", UInt64(h.tracks))
    data.set("bat-entries", UInt64(h.batEntries))
    data.set("nb-sectors", h.nbSectors)
    data.set("in-use", h.inUse == inUseMagic)
    data.set("data-off", UInt64(h.dataOff))
    data.set("flags", UInt64(h.flags))
    data.set("ext-off", h.extOff)
    info.formatSpecific = data
    if h.inUse != 0 && h.inUse != inUseMagic {
      info.findings.append(Finding("ploop.inuse", .warning, field: "inuse", offset: 44,
                                   "is \(hex(h.inUse)), neither 0 nor the in-use magic"))
    } else if h.inUse == inUseMagic {
      info.findings.append(Finding("ploop.dirty", .warning, field: "inuse", offset: 44,
                                   "the image was not closed cleanly (in-use magic set)"))
    }
    if UInt64(h.batEntries) * UInt64(h.tracks) < h.sectors {
      info.findings.append(Finding("ploop.bat-too-small", .corrupt, field: "bat_entries", offset: 32,
                                   "\(h.batEntries) clusters of \(h.tracks) sectors do not cover the \(h.sectors) sectors of the disk"))
    }
    let batEnd = 64 + UInt64(h.batEntries) * 4
    if h.dataStart * 512 < batEnd {
      info.findings.append(Finding("ploop.data-offset", .corrupt, field: "data_off", offset: 48,
                                   "data starts at sector \(h.dataStart), inside the BAT that ends at byte \(batEnd)"))
    }
    if batEnd > ctx.size {
      info.findings.append(Finding("ploop.bat-truncated", .corrupt, field: "bat_entries", offset: 32,
                                   "the BAT ends at byte \(batEnd), beyond the end of the file (\(ctx.size) bytes)"))
    }
    if h.extOff != 0 {
      info.notes.append("a format extension (dirty bitmaps) is at sector \(h.extOff)")
    }
    return info
  }

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var report = CheckReport()
    let h: Header
    do {
      h = try Header.decode(try ctx.reader(at: 0, count: 64, format, "header"))
      try h.validate()
    } catch {
      report.findings.append(Finding(corrupt: error))
      report.counts.set("check-errors", 1)
      return report
    }
    let cluster = h.clusterBytes
    let dataStartBytes = h.dataStart * 512
    // Cluster-sized slots in the file: bounds the duplicate bitmap.
    let slots = ctx.size / cluster + 1
    let tracked = min(slots, Limits.maxTrackedClusters)
    var seen = [UInt64](repeating: 0, count: Int((tracked + 63) / 64))
    var allocated: UInt64 = 0, corruptions: UInt64 = 0, checkErrors: UInt64 = 0
    var highest = dataStartBytes, fragmented: UInt64 = 0
    var previous: UInt64?
    var out: [(UInt64, UInt32)] = [], dup: [(UInt64, UInt32)] = []
    var outCount: UInt64 = 0, dupCount: UInt64 = 0
    let total = UInt64(h.batEntries)
    let piece = UInt64(Limits.batPiece / 4)
    var index: UInt64 = 0
    let maxShown = VMDKProbe.Limits.maxFindingsPerKind
    while index < total {
      let n = min(piece, total - index)
      let bytes: [UInt8]
      do {
        bytes = try ctx.source.readExactly(at: 64 + index * 4, count: Int(n * 4), format: format, field: "BAT")
      } catch {
        report.findings.append(Finding(corrupt: error, id: "ploop.bat-truncated"))
        checkErrors += 1
        break
      }
      bytes.withUnsafeBytes { raw in
        for i in 0..<Int(n) {
          let e = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
          if e == 0 { previous = nil; continue }
          allocated += 1
          let entry = index + UInt64(i)
          let start = UInt64(e) * h.offsetMultiplier * 512  // < 2^32 * 2^22 * 2^9: no overflow
          // qemu-img's counters: the end of the furthest cluster (even outside the file) and
          // clusters that do not follow the previous entry's.
          highest = max(highest, start + cluster)
          if let p = previous, p + cluster != start { fragmented += 1 }
          previous = start
          if start < dataStartBytes || start + cluster > ctx.size {
            corruptions += 1
            outCount += 1
            if out.count < maxShown { out.append((entry, e)) }
            continue
          }
          let slot = start / cluster
          if start % cluster == 0, slot < tracked {
            let w = Int(slot >> 6), b = UInt64(1) << (slot & 63)
            if seen[w] & b != 0 {
              corruptions += 1
              dupCount += 1
              if dup.count < maxShown { dup.append((entry, e)) }
            }
            seen[w] |= b
          }
        }
      }
      index += n
    }
    for (entry, e) in out {
      report.findings.append(Finding("ploop.cluster-out-of-range", .corrupt, field: "BAT", offset: 64 + entry * 4,
                                     "cluster \(entry) maps to \(hex(UInt64(e) * h.offsetMultiplier * 512)), outside the data area (\(hex(dataStartBytes)) to the end of the file, \(ctx.size) bytes)"))
    }
    if outCount > UInt64(out.count) {
      report.findings.append(Finding("ploop.cluster-out-of-range", .corrupt, field: "BAT",
                                     "\(outCount - UInt64(out.count)) more clusters map outside the data area"))
    }
    for (entry, e) in dup {
      report.findings.append(Finding("ploop.bat-duplicate", .corrupt, field: "BAT", offset: 64 + entry * 4,
                                     "cluster \(entry) maps to \(hex(UInt64(e) * h.offsetMultiplier * 512)), which another cluster already uses"))
    }
    if dupCount > UInt64(dup.count) {
      report.findings.append(Finding("ploop.bat-duplicate", .corrupt, field: "BAT",
                                     "\(dupCount - UInt64(dup.count)) more clusters share data"))
    }
    report.counts.set("check-errors", checkErrors)
    report.counts.set("corruptions", corruptions)
    // qemu counts the clusters past the last used one as leaks (it truncates them on repair).
    report.counts.set("leaks", ctx.size > highest ? Checked.ceilDiv(ctx.size - highest, cluster) : 0)
    report.counts.set("allocated-clusters", allocated)
    report.counts.set("total-clusters", total)
    report.counts.set("image-end-offset", highest)
    report.counts.set("fragmented-clusters", fragmented)
    return report
  }
}
