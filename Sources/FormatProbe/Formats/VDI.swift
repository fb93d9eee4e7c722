/// VirtualBox Disk Image (VDI), header version 1.1.
///
/// References: VirtualBox source `VDICore.h` (VDIHEADER1, VDIPREHEADER), qemu block/vdi.c.
/// Detection: signature 0xbeda107f at 0x40 (the pre-header text before it varies: "<<< Oracle VM
/// VirtualBox Disk Image >>>", "<<< Sun xVM VirtualBox Disk Image >>>", "<<< innotek VirtualBox
/// Disk Image >>>", "<<< QEMU VM Virtual Disk Image >>>").
///
/// Header (little-endian):
///
/// | off | size | field |
/// |----:|----:|---|
/// | 0x000 | 64 | pre-header text |
/// | 0x040 | 4 | signature 0xbeda107f |
/// | 0x044 | 4 | version (0x00010001 = 1.1) |
/// | 0x048 | 4 | header size (after the pre-header) |
/// | 0x04c | 4 | image type (1 dynamic, 2 static, 3 undo, 4 differencing) |
/// | 0x050 | 4 | image flags |
/// | 0x054 | 256 | description |
/// | 0x154 | 4 | offset of the block map (bytes) |
/// | 0x158 | 4 | offset of the data (bytes) |
/// | 0x15c | 12 | legacy geometry: cylinders, heads, sectors |
/// | 0x168 | 4 | sector size |
/// | 0x16c | 4 | unused |
/// | 0x170 | 8 | disk size (bytes) |
/// | 0x178 | 4 | block size |
/// | 0x17c | 4 | block extra data (bytes before each block) |
/// | 0x180 | 4 | blocks in the disk |
/// | 0x184 | 4 | blocks allocated |
/// | 0x188 | 16 | UUID of this image |
/// | 0x198 | 16 | UUID of the last modification |
/// | 0x1a8 | 16 | UUID of the link (parent image) |
/// | 0x1b8 | 16 | UUID of the parent's modification |
public enum VDIProbe: DeepCheckable {
  public static let id = "vdi"
  public static let role = ProbeRole.image
  static let format = "vdi"
  static let signature: UInt32 = 0xbeda_107f
  static let version11: UInt32 = 0x0001_0001

  public enum Limits {
    /// qemu's VDI_BLOCKS_IN_IMAGE_MAX: the block map (4 bytes per block) stays under 4 GiB.
    public static let maxBlocks: UInt32 = 0x3fff_ffff
    /// Block sizes accepted: powers of two from one sector to 256 MiB (VirtualBox creates 1 MiB;
    /// qemu opens only 1 MiB).
    public static let maxBlockSize: UInt32 = 256 << 20
    /// Block-map bytes read per piece during check.
    public static let mapPiece = 4 << 20
    /// Blocks tracked in the duplicate bitmap (32 MiB of bits): the index is also bounded by
    /// the file size, so only a > 32 TiB file with 1 MiB blocks could exceed it.
    public static let maxTrackedBlocks: UInt64 = 1 << 28
  }

  /// Block map entry: never written.
  static let unallocated: UInt32 = 0xffff_ffff
  /// Block map entry: discarded, reads as zeros.
  static let zeroBlock: UInt32 = 0xffff_fffe

  public struct Header: Sendable, Equatable {
    public var text: String
    public var version: UInt32
    public var headerSize: UInt32
    public var imageType: UInt32
    public var imageFlags: UInt32
    public var description: String
    public var offsetBlocks: UInt32
    public var offsetData: UInt32
    public var cylinders: UInt32
    public var heads: UInt32
    public var sectors: UInt32
    public var sectorSize: UInt32
    public var diskSize: UInt64
    public var blockSize: UInt32
    public var blockExtra: UInt32
    public var blocksInHDD: UInt32
    public var blocksAllocated: UInt32
    public var uuidCreate: ArraySlice<UInt8>
    public var uuidModify: ArraySlice<UInt8>
    public var uuidLink: ArraySlice<UInt8>
    public var uuidParentModify: ArraySlice<UInt8>

    static func decode(_ r: ByteReader) throws(ImageError) -> Header {
      var r = r
      // The pre-header text ends with a newline (and NULs); keep the line itself.
      let text = Text.ascii(try r.bytes(64, "pre-header text").prefix { $0 != 0x0a })
      _ = try r.u32LE("signature")
      let version = try r.u32LE("version")
      let headerSize = try r.u32LE("header size")
      let imageType = try r.u32LE("image type")
      let imageFlags = try r.u32LE("image flags")
      let description = Text.ascii(try r.bytes(256, "description"))
      let offsetBlocks = try r.u32LE("offset blocks")
      let offsetData = try r.u32LE("offset data")
      let cylinders = try r.u32LE("cylinders")
      let heads = try r.u32LE("heads")
      let sectors = try r.u32LE("sectors")
      let sectorSize = try r.u32LE("sector size")
      try r.skip(4, "unused")
      let diskSize = try r.u64LE("disk size")
      let blockSize = try r.u32LE("block size")
      let blockExtra = try r.u32LE("block extra")
      let blocksInHDD = try r.u32LE("blocks in HDD")
      let blocksAllocated = try r.u32LE("blocks allocated")
      return Header(text: text, version: version, headerSize: headerSize, imageType: imageType,
                    imageFlags: imageFlags, description: description, offsetBlocks: offsetBlocks,
                    offsetData: offsetData, cylinders: cylinders, heads: heads, sectors: sectors,
                    sectorSize: sectorSize, diskSize: diskSize, blockSize: blockSize, blockExtra: blockExtra,
                    blocksInHDD: blocksInHDD, blocksAllocated: blocksAllocated,
                    uuidCreate: try r.bytes(16, "uuid create"), uuidModify: try r.bytes(16, "uuid modify"),
                    uuidLink: try r.bytes(16, "uuid link"), uuidParentModify: try r.bytes(16, "uuid parent modify"))
    }

    public var subformat: String {
      switch imageType {
      case 1: return "dynamic"
      case 2: return "static"
      case 3: return "undo"
      case 4: return "differencing"
      default: return "type-\(imageType)"
      }
    }

    /// Bytes from one block's start to the next (extra data + block).
    var stride: UInt64 { UInt64(blockSize) + UInt64(blockExtra) }

    func validate() throws(ImageError) {
      guard version == version11 else {
        throw ImageError(.unsupported, format: "vdi", field: "version", offset: 0x44,
                         "is \(version >> 16).\(version & 0xffff); only 1.1 is defined", finding: "vdi.version")
      }
      guard (1...4).contains(imageType) else {
        throw ImageError(.invalidField, format: "vdi", field: "image type", offset: 0x4c,
                         "is \(imageType); 1 dynamic, 2 static, 3 undo and 4 differencing exist", finding: "vdi.image-type")
      }
      guard Checked.isPowerOfTwo(UInt64(blockSize)), blockSize >= 512, blockSize <= Limits.maxBlockSize else {
        throw ImageError(.invalidField, format: "vdi", field: "block size", offset: 0x178,
                         "is \(blockSize); it must be a power of two from 512 to \(Limits.maxBlockSize)", finding: "vdi.block-size")
      }
      guard blocksInHDD <= Limits.maxBlocks else {
        throw ImageError(.limitExceeded, format: "vdi", field: "blocks in HDD", offset: 0x180,
                         "is \(blocksInHDD), limit \(Limits.maxBlocks) (qemu's)", finding: "vdi.block-map-size")
      }
      guard diskSize <= UInt64(blocksInHDD) * UInt64(blockSize) else {
        throw ImageError(.invalidField, format: "vdi", field: "disk size", offset: 0x170,
                         "is \(diskSize) bytes but \(blocksInHDD) blocks of \(blockSize) bytes hold only \(UInt64(blocksInHDD) * UInt64(blockSize))",
                         finding: "vdi.disk-size")
      }
      guard blocksAllocated <= blocksInHDD else {
        throw ImageError(.invalidField, format: "vdi", field: "blocks allocated", offset: 0x184,
                         "is \(blocksAllocated), more than the \(blocksInHDD) blocks of the disk", finding: "vdi.blocks-allocated")
      }
    }
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let head = ctx.headReader(format)
    guard let sig = try? head.u32LE(at: 0x40, "signature"), sig == signature else { return nil }
    let r = try ctx.reader(at: 0, count: 0x1c8, format, "header")
    let h = try Header.decode(r)
    try h.validate()
    var info = ImageInfo(probe: id, qemuFormat: "vdi", diskFormat: .vdi, subformat: h.subformat,
                         virtualSize: h.diskSize)
    info.clusterSize = UInt64(h.blockSize)
    info.dirty = false
    var data = JSONObject()
    data.set("text", h.text)
    data.set("version", "1.1")
    data.set("header-size", UInt64(h.headerSize))
    data.set("image-type", h.subformat)
    data.set("image-flags", UInt64(h.imageFlags))
    if !h.description.isEmpty { data.set("description", h.description) }
    data.set("offset-blocks", UInt64(h.offsetBlocks))
    data.set("offset-data", UInt64(h.offsetData))
    var geometry = JSONObject()
    geometry.set("cylinders", UInt64(h.cylinders))
    geometry.set("heads", UInt64(h.heads))
    geometry.set("sectors", UInt64(h.sectors))
    data.set("geometry", geometry.json)
    data.set("sector-size", UInt64(h.sectorSize))
    data.set("block-size", UInt64(h.blockSize))
    data.set("block-extra", UInt64(h.blockExtra))
    data.set("blocks-in-hdd", UInt64(h.blocksInHDD))
    data.set("blocks-allocated", UInt64(h.blocksAllocated))
    data.set("uuid", GUID.mixedEndian(h.uuidCreate))
    data.set("modification-uuid", GUID.mixedEndian(h.uuidModify))
    if !GUID.isZero(h.uuidLink) { data.set("parent-uuid", GUID.mixedEndian(h.uuidLink)) }
    if !GUID.isZero(h.uuidParentModify) { data.set("parent-modification-uuid", GUID.mixedEndian(h.uuidParentModify)) }
    info.formatSpecific = data

    if h.imageType == 3 || h.imageType == 4 || !GUID.isZero(h.uuidLink) {
      info.findings.append(Finding("vdi.differencing", .unsafe, field: "image type", offset: 0x4c,
                                   "a \(h.subformat) image of parent \(GUID.mixedEndian(h.uuidLink)): its data is completed by another image that VirtualBox finds by UUID",
                                   fix: "clone it to a standalone image: VBoxManage clonemedium, or qemu-img convert with the parent"))
    }
    if h.sectorSize != 512 {
      info.findings.append(Finding("vdi.sector-size", .warning, field: "sector size", offset: 0x168,
                                   "is \(h.sectorSize); qemu opens only 512"))
    }
    if h.blockSize != 1 << 20 {
      info.notes.append("block size is \(h.blockSize) bytes; qemu opens only 1 MiB blocks")
    }
    let mapBytes = UInt64(h.blocksInHDD) * 4
    if UInt64(h.offsetBlocks) % 512 != 0 || UInt64(h.offsetData) % 512 != 0 {
      info.findings.append(Finding("vdi.offset-alignment", .corrupt, field: "offset blocks", offset: 0x154,
                                   "the block map (\(hex(h.offsetBlocks))) or data (\(hex(h.offsetData))) offset is not sector-aligned"))
    }
    if UInt64(h.offsetBlocks) < 0x200 || UInt64(h.offsetBlocks) + mapBytes > UInt64(h.offsetData) {
      info.findings.append(Finding("vdi.block-map-overlap", .corrupt, field: "offset blocks", offset: 0x154,
                                   "the block map (\(mapBytes) bytes at \(hex(h.offsetBlocks))) overlaps the header or the data at \(hex(h.offsetData))"))
    }
    if UInt64(h.offsetBlocks) + mapBytes > ctx.size {
      info.findings.append(Finding("vdi.block-map-truncated", .corrupt, field: "offset blocks", offset: 0x154,
                                   "the block map (\(mapBytes) bytes at \(hex(h.offsetBlocks))) ends beyond the end of the file (\(ctx.size) bytes)"))
    }
    return info
  }

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var report = CheckReport()
    let h: Header
    do {
      h = try Header.decode(try ctx.reader(at: 0, count: 0x1c8, format, "header"))
      try h.validate()
    } catch {
      report.findings.append(Finding(corrupt: error))
      report.counts.set("check-errors", 1)
      return report
    }
    let total = UInt64(h.blocksInHDD)
    let dataStart = UInt64(h.offsetData)
    // Indices whose block lies inside the file: the bound of the duplicate bitmap.
    let fitting = ctx.size > dataStart ? (ctx.size - dataStart) / h.stride : 0
    let tracked = min(fitting, Limits.maxTrackedBlocks)
    var seen = [UInt64](repeating: 0, count: Int((tracked + 63) / 64))
    var allocated: UInt64 = 0, zero: UInt64 = 0, corruptions: UInt64 = 0, checkErrors: UInt64 = 0
    var distinct: UInt64 = 0
    var outOfRange: [(UInt64, UInt32)] = [], duplicates: [(UInt64, UInt32)] = []
    var outCount: UInt64 = 0, dupCount: UInt64 = 0
    var index: UInt64 = 0
    let piece = UInt64(Limits.mapPiece / 4)
    while index < total {
      let n = min(piece, total - index)
      let at = UInt64(h.offsetBlocks) + index * 4
      let bytes: [UInt8]
      do {
        bytes = try ctx.source.readExactly(at: at, count: Int(n * 4), format: format, field: "block map")
      } catch {
        report.findings.append(Finding(corrupt: error, id: "vdi.block-map-truncated"))
        checkErrors += 1
        break
      }
      bytes.withUnsafeBytes { raw in
        for i in 0..<Int(n) {
          let e = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
          if e == unallocated { continue }
          if e == zeroBlock { zero += 1; continue }
          // Like qemu, an entry counts as allocated only when it names a block of the disk.
          if UInt64(e) < total { allocated += 1 }
          let entry = index + UInt64(i)
          if UInt64(e) >= fitting || UInt64(e) >= total {
            corruptions += 1
            outCount += 1
            if outOfRange.count < VMDKProbe.Limits.maxFindingsPerKind { outOfRange.append((entry, e)) }
            continue
          }
          if UInt64(e) < tracked {
            let w = Int(e >> 6), b = UInt64(1) << UInt64(e & 63)
            if seen[w] & b == 0 { distinct += 1 }
            if seen[w] & b != 0 {
              corruptions += 1
              dupCount += 1
              if duplicates.count < VMDKProbe.Limits.maxFindingsPerKind { duplicates.append((entry, e)) }
            }
            seen[w] |= b
          }
        }
      }
      index += n
    }
    for (entry, e) in outOfRange {
      report.findings.append(Finding("vdi.block-out-of-range", .corrupt, field: "block map",
                                     offset: UInt64(h.offsetBlocks) + entry * 4,
                                     "block \(entry) maps to data block \(e), beyond the \(fitting) blocks the file holds (or the \(total) of the disk)"))
    }
    if outCount > UInt64(outOfRange.count) {
      report.findings.append(Finding("vdi.block-out-of-range", .corrupt, field: "block map",
                                     "\(outCount - UInt64(outOfRange.count)) more blocks map beyond the file"))
    }
    for (entry, e) in duplicates {
      report.findings.append(Finding("vdi.block-map-duplicate", .corrupt, field: "block map",
                                     offset: UInt64(h.offsetBlocks) + entry * 4,
                                     "block \(entry) maps to data block \(e), which another block already uses: writing one changes both"))
    }
    if dupCount > UInt64(duplicates.count) {
      report.findings.append(Finding("vdi.block-map-duplicate", .corrupt, field: "block map",
                                     "\(dupCount - UInt64(duplicates.count)) more blocks share a data block"))
    }
    if allocated != UInt64(h.blocksAllocated) {
      report.findings.append(Finding("vdi.blocks-allocated", .corrupt, field: "blocks allocated", offset: 0x184,
                                     "the header says \(h.blocksAllocated) blocks are allocated, the block map has \(allocated)"))
      corruptions += 1
    }
    if fitting > Limits.maxTrackedBlocks {
      report.findings.append(Finding("vdi.check-limit", .info, "duplicates were checked among the first \(tracked) data blocks only"))
    }
    report.counts.set("check-errors", checkErrors)
    report.counts.set("corruptions", corruptions)
    // Data blocks the file holds that no disk block uses (space a compaction would free).
    report.counts.set("leaks", fitting <= Limits.maxTrackedBlocks && fitting > distinct ? fitting - distinct : 0)
    report.counts.set("allocated-clusters", allocated)
    report.counts.set("zero-clusters", zero)
    report.counts.set("total-clusters", total)
    return report
  }
}
