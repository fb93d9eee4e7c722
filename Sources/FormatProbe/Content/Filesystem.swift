/// Filesystems found at the start of raw data: a raw filesystem image (offset 0) or a partition
/// (the partition-table probe calls `describe(_:at:length:)` for each partition start).
///
/// Only superblocks are read: at most `Limits.headBytes` at the start and `Limits.highBytes` around
/// 64 KiB (btrfs superblock, swap signature for 64 KiB pages), never the filesystem body. Weak
/// magics (ext's two bytes, FAT's boot-sector layout) are only believed after their fields validate,
/// so arbitrary data is not mistaken for a filesystem; strong magics with impossible fields are
/// reported with a `filesystem.superblock-invalid` finding instead of being dropped.
/// ISO 9660 and UDF are the ISO probe's (`Formats/ISO.swift`), not reported here.
public enum FilesystemProbe: FormatProbe {
  public static let id = "filesystem"
  public static let role = ProbeRole.content

  public enum Limits {
    /// Bytes read at the start: FAT/NTFS/exFAT boot sector (0), ext superblock (1024..2047), XFS
    /// and squashfs superblocks (0), LVM2 label (sectors 0-3), swap signature for 4 KiB pages (4086).
    public static let headBytes = 8 << 10
    /// Start of the second window: the swap signature of 64 KiB pages ends at 65536.
    public static let highStart: UInt64 = 60 << 10
    /// Second window length: up to the end of the btrfs primary superblock (64 KiB + 4 KiB).
    public static let highBytes = 8 << 10
    /// ext block sizes are 1024 << s_log_block_size; the kernel accepts up to 64 KiB (log 6).
    public static let extMaxLogBlockSize: UInt32 = 6
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    guard let fs = try describe(ctx, at: 0, length: ctx.size) else { return nil }
    var info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .raw, subformat: fs.type, virtualSize: ctx.size)
    info.filesystem = fs.json.json
    info.findings = fs.findings
    return info
  }

  /// What one superblock says.
  public struct Description: Sendable {
    public var type: String
    public var json = JSONObject()
    public var findings: [Finding] = []
    /// Bytes the filesystem claims (nil when unknown).
    public var size: UInt64?
    /// The claimed size does not fit in 64 bits (block count times block size overflows): more
    /// than any file holds, so as much beyond the end as a size can be.
    public var sizeOverflows = false

    /// Records the size `units` x `unitBytes`, or that it overflows 64 bits.
    mutating func setSize(_ units: UInt64, times unitBytes: UInt64) {
      let (size, overflow) = units.multipliedReportingOverflow(by: unitBytes)
      if overflow {
        sizeOverflows = true
      } else {
        json.set("size", size)
        self.size = size
      }
    }
  }

  /// The filesystem whose superblock starts at `base` in a region of `length` bytes, or nil.
  /// Throws only for I/O (a stream that no longer holds the bytes). In a partition (`inPartition`)
  /// LUKS and ISO 9660 are named too; at offset 0 they are image formats with probes of their own.
  public static func describe(_ ctx: ProbeContext, at base: UInt64, length: UInt64, inPartition: Bool = false)
    throws(ImageError) -> Description?
  {
    let low = ByteReader(try window(ctx, base, 0, Limits.headBytes, length), base: base, format: "filesystem")
    var found: Description?
    if let d = squashfs(low) ?? xfs(low) ?? ntfs(low) ?? exfat(low) ?? fat(low) ?? ext(low) ?? lvm(low) ?? swap(low, windowStart: 0) {
      found = d
    } else if inPartition, let d = luks(low) {
      found = d
    } else if inPartition, length >= 32774, try window(ctx, base, 32769, 5, length) == Array("CD001".utf8) {
      // A hybrid ISO's partition table lists the ISO itself.
      found = Description(type: "iso9660")
      found?.json.set("type", "iso9660")
    } else if length > Limits.highStart {
      let high = ByteReader(try window(ctx, base, Limits.highStart, Limits.highBytes, length),
                            base: base + Limits.highStart, format: "filesystem")
      found = btrfs(high) ?? swap(high, windowStart: Int(Limits.highStart))
    }
    guard var d = found else { return nil }
    if let s = d.size, s > length {
      d.findings.append(Finding("filesystem.beyond-end", .corrupt, offset: base,
                                "the \(d.type) filesystem at \(hex(base)) declares \(s) bytes but only \(length) are there: the guest would read past the end"))
    } else if d.sizeOverflows {
      d.findings.append(Finding("filesystem.beyond-end", .corrupt, offset: base,
                                "the \(d.type) filesystem at \(hex(base)) declares 2^64 bytes or more but only \(length) are there: the guest would read past the end"))
    }
    return d
  }

  /// Up to `count` bytes at `base + offset`, not past `length`.
  static func window(_ ctx: ProbeContext, _ base: UInt64, _ offset: UInt64, _ count: Int, _ length: UInt64) throws(ImageError) -> [UInt8] {
    guard offset < length else { return [] }
    let n = Int(min(UInt64(count), length - offset))
    let (start, o) = base.addingReportingOverflow(offset)
    guard !o else { return [] }
    if start < UInt64(ctx.head.count) {
      let s = Int(start)
      if n <= ctx.head.count - s { return Array(ctx.head[s..<(s + n)]) }
    }
    return try ctx.read(at: start, count: n)
  }

  static func invalid(_ d: inout Description, _ field: String, at offset: UInt64, _ detail: String) {
    d.findings.append(Finding("filesystem.superblock-invalid", .warning, field: field, offset: offset,
                              "\(d.type): \(field) at \(hex(offset)) \(detail)"))
  }

  // MARK: ext2/3/4

  /// ext2/3/4 superblock, 1024 bytes at offset 1024 (Linux `fs/ext4/ext4.h`, struct ext4_super_block):
  ///
  /// | offset | size | field |
  /// |---|---|---|
  /// | 0x04 | 4 | s_blocks_count_lo |
  /// | 0x18 | 4 | s_log_block_size (block = 1024 << n) |
  /// | 0x38 | 2 | s_magic = 0xEF53 |
  /// | 0x3A | 2 | s_state (1 = cleanly unmounted) |
  /// | 0x4C | 4 | s_rev_level |
  /// | 0x5C | 4 | s_feature_compat (0x4 has_journal) |
  /// | 0x60 | 4 | s_feature_incompat (0x8 journal_dev, 0x4 recover, 0x40 extents, 0x80 64bit, ...) |
  /// | 0x64 | 4 | s_feature_ro_compat |
  /// | 0x68 | 16 | s_uuid |
  /// | 0x78 | 16 | s_volume_name |
  /// | 0x150 | 4 | s_blocks_count_hi (with 64bit) |
  static func ext(_ r: ByteReader) -> Description? {
    let sb = 1024
    guard let magic = try? r.u16LE(at: sb + 0x38, "s_magic"), magic == 0xEF53,
          let blocksLo = try? r.u32LE(at: sb + 0x04, "s_blocks_count_lo"),
          let logBlock = try? r.u32LE(at: sb + 0x18, "s_log_block_size"), logBlock <= Limits.extMaxLogBlockSize,
          let compat = try? r.u32LE(at: sb + 0x5C, "s_feature_compat"),
          let incompat = try? r.u32LE(at: sb + 0x60, "s_feature_incompat"),
          let roCompat = try? r.u32LE(at: sb + 0x64, "s_feature_ro_compat"),
          let uuid = try? r.bytes(at: sb + 0x68, 16, "s_uuid"),
          let name = try? r.bytes(at: sb + 0x78, 16, "s_volume_name"),
          let state = try? r.u16LE(at: sb + 0x3A, "s_state"),
          blocksLo != 0 || incompat & 0x80 != 0
    else { return nil }
    let blocksHi = incompat & 0x80 != 0 ? ((try? r.u32LE(at: sb + 0x150, "s_blocks_count_hi")) ?? 0) : 0
    let blocks = UInt64(blocksHi) << 32 | UInt64(blocksLo)
    let blockSize = UInt64(1024) << UInt64(logBlock)
    // Like libblkid: a journal device is jbd; features beyond what ext3 supports make it ext4;
    // a journal makes it ext3; otherwise ext2.
    let ext3Incompat: UInt32 = 0x0002 | 0x0004 | 0x0010  // filetype, recover, meta_bg
    let ext3RoCompat: UInt32 = 0x0001 | 0x0002 | 0x0004  // sparse_super, large_file, btree_dir
    let type: String
    if incompat & 0x0008 != 0 {
      type = "jbd"
    } else if incompat & ~ext3Incompat != 0 || roCompat & ~ext3RoCompat != 0 {
      type = "ext4"
    } else if compat & 0x0004 != 0 {
      type = "ext3"
    } else {
      type = "ext2"
    }
    var d = Description(type: type)
    d.json.set("type", type)
    let label = Text.utf8(name)
    d.json.set("label", label.isEmpty ? nil : label)
    d.json.set("uuid", GUID.bigEndian(uuid))
    d.json.set("block-size", blockSize)
    d.json.set("blocks", blocks)
    d.setSize(blocks, times: blockSize)
    d.json.set("journal", compat & 0x0004 != 0)
    if incompat & 0x0004 != 0 { d.json.set("needs-recovery", true) }
    d.json.set("clean", state & 1 != 0)
    return d
  }

  // MARK: XFS

  /// XFS superblock at offset 0, big-endian (xfs_format.h, struct xfs_dsb):
  ///
  /// | offset | size | field |
  /// |---|---|---|
  /// | 0 | 4 | sb_magicnum "XFSB" |
  /// | 4 | 4 | sb_blocksize |
  /// | 8 | 8 | sb_dblocks |
  /// | 32 | 16 | sb_uuid |
  /// | 100 | 2 | sb_versionnum (low 4 bits: version 4 or 5) |
  /// | 102 | 2 | sb_sectsize |
  /// | 108 | 12 | sb_fname (label) |
  static func xfs(_ r: ByteReader) -> Description? {
    guard r.matches(Array("XFSB".utf8), at: 0),
          let blockSize = try? r.u32BE(at: 4, "sb_blocksize"),
          let dblocks = try? r.u64BE(at: 8, "sb_dblocks"),
          let uuid = try? r.bytes(at: 32, 16, "sb_uuid"),
          let version = try? r.u16BE(at: 100, "sb_versionnum"),
          let sectSize = try? r.u16BE(at: 102, "sb_sectsize"),
          let name = try? r.bytes(at: 108, 12, "sb_fname")
    else { return nil }
    var d = Description(type: "xfs")
    d.json.set("type", "xfs")
    let label = Text.utf8(name)
    d.json.set("label", label.isEmpty ? nil : label)
    d.json.set("uuid", GUID.bigEndian(uuid))
    d.json.set("version", Int(version & 0xf))
    // xfs_validate_sb_common: block size a power of two from 512 to 64 KiB, sector size likewise.
    guard Checked.isPowerOfTwo(UInt64(blockSize)), (512...65536).contains(blockSize) else {
      invalid(&d, "sb_blocksize", at: r.base + 4, "is \(blockSize), not a power of two from 512 to 65536")
      return d
    }
    if !Checked.isPowerOfTwo(UInt64(sectSize)) || sectSize < 512 {
      invalid(&d, "sb_sectsize", at: r.base + 102, "is \(sectSize), not a power of two of at least 512")
    }
    d.json.set("block-size", UInt64(blockSize))
    d.json.set("blocks", dblocks)
    d.setSize(dblocks, times: UInt64(blockSize))
    return d
  }

  // MARK: FAT12/16/32

  /// FAT boot sector and BIOS parameter block (Microsoft FAT specification, "fatgen103"):
  ///
  /// | offset | size | field |
  /// |---|---|---|
  /// | 0 | 3 | BS_jmpBoot (EB xx 90 or E9 xx xx) |
  /// | 3 | 8 | BS_OEMName |
  /// | 11 | 2 | BPB_BytsPerSec (512, 1024, 2048, 4096) |
  /// | 13 | 1 | BPB_SecPerClus (power of two) |
  /// | 14 | 2 | BPB_RsvdSecCnt (>= 1) |
  /// | 16 | 1 | BPB_NumFATs (>= 1) |
  /// | 17 | 2 | BPB_RootEntCnt |
  /// | 19 | 2 | BPB_TotSec16 |
  /// | 21 | 1 | BPB_Media (0xF0, 0xF8-0xFF) |
  /// | 22 | 2 | BPB_FATSz16 |
  /// | 32 | 4 | BPB_TotSec32 |
  /// | 36 | 4 | BPB_FATSz32 (FAT32) |
  /// | 38 / 66 | 1 | BS_BootSig (0x29: serial, label, type follow) |
  /// | 39 / 67 | 4 | BS_VolID |
  /// | 43 / 71 | 11 | BS_VolLab |
  /// | 510 | 2 | 0x55 0xAA |
  ///
  /// The FAT type follows from the cluster count alone (fatgen103: < 4085 FAT12, < 65525 FAT16).
  static func fat(_ r: ByteReader) -> Description? {
    guard let j = try? r.u8(at: 0, "BS_jmpBoot"), j == 0xEB || j == 0xE9,
          r.matches([0x55, 0xAA], at: 510),
          let bps = try? r.u16LE(at: 11, "BPB_BytsPerSec"), [512, 1024, 2048, 4096].contains(bps),
          let spc = try? r.u8(at: 13, "BPB_SecPerClus"), Checked.isPowerOfTwo(UInt64(spc)),
          let reserved = try? r.u16LE(at: 14, "BPB_RsvdSecCnt"), reserved >= 1,
          let fats = try? r.u8(at: 16, "BPB_NumFATs"), fats >= 1,
          let rootEntries = try? r.u16LE(at: 17, "BPB_RootEntCnt"),
          let total16 = try? r.u16LE(at: 19, "BPB_TotSec16"),
          let media = try? r.u8(at: 21, "BPB_Media"), media == 0xF0 || media >= 0xF8,
          let fatSize16 = try? r.u16LE(at: 22, "BPB_FATSz16"),
          let total32 = try? r.u32LE(at: 32, "BPB_TotSec32"),
          let fatSize32 = try? r.u32LE(at: 36, "BPB_FATSz32")
    else { return nil }
    let fatSize = fatSize16 != 0 ? UInt64(fatSize16) : UInt64(fatSize32)
    let total = total16 != 0 ? UInt64(total16) : UInt64(total32)
    guard fatSize != 0, total != 0 else { return nil }
    let rootSectors = Checked.ceilDiv(UInt64(rootEntries) * 32, UInt64(bps))
    // All operands are at most 32 bits wide, so this metadata sum fits in 64 bits.
    let metadata = UInt64(reserved) + UInt64(fats) * fatSize + rootSectors
    guard metadata < total else { return nil }
    let clusters = (total - metadata) / UInt64(spc)
    let type = clusters < 4085 ? "fat12" : clusters < 65525 ? "fat16" : "fat32"
    // FAT32 keeps its extended fields at 64; FAT12/16 at 36.
    let ext = type == "fat32" ? 64 : 36
    var d = Description(type: type)
    d.json.set("type", type)
    if let sig = try? r.u8(at: ext + 2, "BS_BootSig"), sig == 0x29,
       let serial = try? r.u32LE(at: ext + 3, "BS_VolID"),
       let label = try? r.bytes(at: ext + 7, 11, "BS_VolLab")
    {
      let l = Text.ascii(label)
      if !l.isEmpty, l != "NO NAME" { d.json.set("label", l) }
      d.json.set("uuid", hex4(UInt16(serial >> 16)) + "-" + hex4(UInt16(serial & 0xffff)))
    }
    d.json.set("sector-size", UInt64(bps))
    d.json.set("cluster-size", UInt64(bps) * UInt64(spc))
    d.json.set("clusters", clusters)
    d.json.set("media", hex(media))
    let size = total * UInt64(bps)
    d.json.set("size", size)
    d.size = size
    return d
  }

  static func hex4(_ v: UInt16) -> String {
    let h = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: 4 - h.count) + h
  }

  // MARK: NTFS

  /// NTFS boot sector: OEM id "NTFS    " at 3, BPB bytes per sector at 11, sectors per cluster at
  /// 13 (values above 0x80 mean 2^(256-n)), total sectors (8) at 40, MFT cluster (8) at 48, volume
  /// serial (8) at 72. The label lives in the $Volume MFT record, which is not read.
  static func ntfs(_ r: ByteReader) -> Description? {
    guard r.matches(Array("NTFS    ".utf8), at: 3),
          let bps = try? r.u16LE(at: 11, "bytes_per_sector"),
          let spcRaw = try? r.u8(at: 13, "sectors_per_cluster"),
          let total = try? r.u64LE(at: 40, "total_sectors"),
          let serial = try? r.u64LE(at: 72, "volume_serial")
    else { return nil }
    var d = Description(type: "ntfs")
    d.json.set("type", "ntfs")
    d.json.set("uuid", String(serial, radix: 16, uppercase: true))
    guard [256, 512, 1024, 2048, 4096].contains(bps) else {
      invalid(&d, "bytes_per_sector", at: r.base + 11, "is \(bps), not a power of two from 256 to 4096")
      return d
    }
    let spc: UInt64 = spcRaw <= 0x80 ? UInt64(spcRaw) : (256 - UInt64(spcRaw) < 32 ? 1 << (256 - UInt64(spcRaw)) : 0)
    guard Checked.isPowerOfTwo(spc) else {
      invalid(&d, "sectors_per_cluster", at: r.base + 13, "is \(hex(spcRaw)), not a power of two")
      return d
    }
    d.json.set("sector-size", UInt64(bps))
    d.json.set("cluster-size", spc * UInt64(bps))
    d.setSize(total, times: UInt64(bps))
    return d
  }

  // MARK: exFAT

  /// exFAT boot sector (Microsoft exFAT specification, section 3.1): FileSystemName "EXFAT   " at 3,
  /// VolumeLength (8, sectors) at 72, ClusterCount (4) at 92, VolumeSerialNumber (4) at 100,
  /// FileSystemRevision (2) at 104, BytesPerSectorShift (1, 9..12) at 108, SectorsPerClusterShift
  /// (1, at most 25 - BytesPerSectorShift) at 109. The label is a root-directory entry (not read).
  static func exfat(_ r: ByteReader) -> Description? {
    guard r.matches(Array("EXFAT   ".utf8), at: 3),
          let length = try? r.u64LE(at: 72, "VolumeLength"),
          let clusters = try? r.u32LE(at: 92, "ClusterCount"),
          let serial = try? r.u32LE(at: 100, "VolumeSerialNumber"),
          let revision = try? r.u16LE(at: 104, "FileSystemRevision"),
          let bpsShift = try? r.u8(at: 108, "BytesPerSectorShift"),
          let spcShift = try? r.u8(at: 109, "SectorsPerClusterShift")
    else { return nil }
    var d = Description(type: "exfat")
    d.json.set("type", "exfat")
    d.json.set("uuid", hex4(UInt16(serial >> 16)) + "-" + hex4(UInt16(serial & 0xffff)))
    d.json.set("version", "\(revision >> 8).\(revision & 0xff)")
    guard (9...12).contains(bpsShift), Int(spcShift) <= 25 - Int(bpsShift) else {
      invalid(&d, "BytesPerSectorShift", at: r.base + 108,
              "is \(bpsShift) with SectorsPerClusterShift \(spcShift): sectors must be 512..4096 bytes and clusters at most 32 MiB")
      return d
    }
    d.json.set("sector-size", UInt64(1) << UInt64(bpsShift))
    d.json.set("cluster-size", UInt64(1) << UInt64(bpsShift + spcShift))
    d.json.set("clusters", UInt64(clusters))
    d.setSize(length, times: UInt64(1) << UInt64(bpsShift))
    return d
  }

  // MARK: btrfs

  /// btrfs primary superblock at 64 KiB (btrfs_super_block in the kernel's uapi/linux/btrfs_tree.h):
  /// fsid (16) at 0x20, magic "_BHRfS_M" at 0x40, total_bytes (8) at 0x70, num_devices (8) at 0x88,
  /// sectorsize (4) at 0x90, nodesize (4) at 0x94, label (256) at 0x12B.
  static func btrfs(_ r: ByteReader) -> Description? {
    // `r` starts at Limits.highStart; the superblock at 64 KiB.
    let sb = Int((64 << 10) - Limits.highStart)
    guard r.matches(Array("_BHRfS_M".utf8), at: sb + 0x40),
          let fsid = try? r.bytes(at: sb + 0x20, 16, "fsid"),
          let total = try? r.u64LE(at: sb + 0x70, "total_bytes"),
          let devices = try? r.u64LE(at: sb + 0x88, "num_devices"),
          let sector = try? r.u32LE(at: sb + 0x90, "sectorsize"),
          let node = try? r.u32LE(at: sb + 0x94, "nodesize"),
          let name = try? r.bytes(at: sb + 0x12B, 256, "label")
    else { return nil }
    var d = Description(type: "btrfs")
    d.json.set("type", "btrfs")
    let label = Text.utf8(name)
    d.json.set("label", label.isEmpty ? nil : label)
    d.json.set("uuid", GUID.bigEndian(fsid))
    d.json.set("sector-size", UInt64(sector))
    d.json.set("node-size", UInt64(node))
    d.json.set("devices", devices)
    d.json.set("size", total)
    // total_bytes is the sum over every device: only a single-device filesystem must fit here.
    if devices == 1 { d.size = total }
    return d
  }

  // MARK: swap

  /// Linux swap: "SWAPSPACE2" (or the old "SWAP-SPACE") in the last 10 bytes of the first page
  /// (4, 8, 16 or 64 KiB pages). Version 1 header at 1024 (include/linux/swap.h, union swap_header):
  /// version (4), last_page (4), nr_badpages (4), sws_uuid (16), sws_volume (16).
  static func swap(_ r: ByteReader, windowStart: Int) -> Description? {
    for page in [4096, 8192, 16384, 65536] {
      let at = page - 10 - windowStart
      let v2 = r.matches(Array("SWAPSPACE2".utf8), at: at)
      guard v2 || r.matches(Array("SWAP-SPACE".utf8), at: at) else { continue }
      var d = Description(type: "swap")
      d.json.set("type", "swap")
      d.json.set("page-size", UInt64(page))
      d.json.set("version", v2 ? 1 : 0)
      // The version 1 header lives at 1024 of the start, which only the first window holds.
      if v2, windowStart == 0, let version = try? r.u32LE(at: 1024, "version"),
         let lastPage = try? r.u32LE(at: 1028, "last_page"),
         let uuid = try? r.bytes(at: 1036, 16, "sws_uuid"),
         let name = try? r.bytes(at: 1052, 16, "sws_volume")
      {
        if version == 1 {
          let label = Text.utf8(name)
          d.json.set("label", label.isEmpty ? nil : label)
          if !GUID.isZero(uuid) { d.json.set("uuid", GUID.bigEndian(uuid)) }
          let size = (UInt64(lastPage) + 1) * UInt64(page)
          d.json.set("size", size)
          d.size = size
        } else if version.byteSwapped == 1 {
          d.json.set("byte-order", "big-endian")
        }
      }
      return d
    }
    return nil
  }

  // MARK: LVM2 physical volume

  /// LVM2 label: "LABELONE" at the start of one of sectors 0-3 (label_header: id (8), sector_xl
  /// (8), crc_xl (4), offset_xl (4), type "LVM2 001" (8)), then at label + offset_xl the
  /// pv_header: pv_uuid (32 ASCII), device_size_xl (8).
  static func lvm(_ r: ByteReader) -> Description? {
    for sector in 0..<4 {
      let at = sector * 512
      guard r.matches(Array("LABELONE".utf8), at: at), r.matches(Array("LVM2 001".utf8), at: at + 24) else { continue }
      var d = Description(type: "lvm2-pv")
      d.json.set("type", "lvm2-pv")
      if let offset = try? r.u32LE(at: at + 20, "offset_xl"), offset >= 32, offset < 512,
         let uuid = try? r.bytes(at: at + Int(offset), 32, "pv_uuid"),
         let size = try? r.u64LE(at: at + Int(offset) + 32, "device_size_xl")
      {
        // LVM prints the 32 characters grouped 6-4-4-4-4-4-6.
        var s = ""
        for (i, c) in Text.ascii(uuid).enumerated() {
          if [6, 10, 14, 18, 22, 26].contains(i) { s += "-" }
          s.append(c)
        }
        d.json.set("uuid", s)
        d.json.set("size", size)
        d.size = size == 0 ? nil : size
      } else {
        invalid(&d, "offset_xl", at: r.base + UInt64(at) + 20, "does not point at a pv_header inside the label sector")
      }
      return d
    }
    return nil
  }

  // MARK: LUKS (partitions only)

  /// LUKS header (LUKS1 on-disk format 1.2.3, LUKS2 on-disk format): magic "LUKS\xba\xbe" at 0,
  /// version (2, BE) at 6, uuid (40, ASCII) at 168 in both versions. An encrypted partition: its
  /// content cannot be described further.
  static func luks(_ r: ByteReader) -> Description? {
    guard r.matches([0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE], at: 0), let version = try? r.u16BE(at: 6, "version"),
          let uuid = try? r.bytes(at: 168, 40, "uuid")
    else { return nil }
    var d = Description(type: "luks")
    d.json.set("type", "luks")
    d.json.set("version", Int(version))
    let u = Text.ascii(uuid)
    d.json.set("uuid", u.isEmpty ? nil : u)
    return d
  }

  // MARK: squashfs

  /// squashfs 4 superblock (little-endian, squashfs_fs.h): s_magic "hsqs" at 0, inodes (4) at 4,
  /// mkfs_time (4) at 8, block_size (4) at 12, fragments (4) at 16, compression (2) at 20,
  /// block_log (2) at 22, flags (2) at 24, no_ids (2) at 26, s_major (2) at 28, s_minor (2) at 30,
  /// root_inode (8) at 32, bytes_used (8) at 40. Big-endian "sqsh" is squashfs 1-3.
  static func squashfs(_ r: ByteReader) -> Description? {
    let little = r.matches(Array("hsqs".utf8), at: 0)
    guard little || r.matches(Array("sqsh".utf8), at: 0) else { return nil }
    var d = Description(type: "squashfs")
    d.json.set("type", "squashfs")
    guard little, let major = try? r.u16LE(at: 28, "s_major"), let minor = try? r.u16LE(at: 30, "s_minor"),
          let blockSize = try? r.u32LE(at: 12, "block_size"),
          let compression = try? r.u16LE(at: 20, "compression"),
          let used = try? r.u64LE(at: 40, "bytes_used")
    else {
      d.json.set("byte-order", "big-endian")
      return d
    }
    d.json.set("version", "\(major).\(minor)")
    d.json.set("block-size", UInt64(blockSize))
    let names = [1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"]
    d.json.set("compression", names[Int(compression)] ?? "unknown (\(compression))")
    // squashfs 4: block size a power of two from 4 KiB to 1 MiB.
    if !Checked.isPowerOfTwo(UInt64(blockSize)) || blockSize < 4096 || blockSize > 1 << 20 {
      invalid(&d, "block_size", at: r.base + 12, "is \(blockSize), not a power of two from 4096 to 1048576")
    }
    d.json.set("size", used)
    d.size = used
    return d
  }
}
