/// Partition tables of raw disks (and of hybrid ISOs and fixed VHDs, which Inspector attaches them
/// to): MBR with extended/logical chains, protective and hybrid MBRs, and GPT with its backup.
///
/// References: UEFI Specification 2.10, section 5.2 (legacy and protective MBR) and 5.3 (GPT
/// header, partition entry array); the IBM PC MBR/EBR layout as Linux `block/partitions/msdos.c`
/// reads it. Every LBA and count is range-checked before it becomes an offset; the entry array is
/// bounded (`Limits`), and the extended-partition chain is walked with a visited set and a cap.
public enum PartitionTableProbe: FormatProbe {
  public static let id = "partition-table"
  public static let role = ProbeRole.content

  public enum Limits {
    /// Logical partitions followed through an extended chain. Linux gives a disk at most 256 minor
    /// numbers (DISK_MAX_PARTS) and stops there; no real table needs more than 128 logicals.
    public static let maxLogicalPartitions = 128
    /// GPT entries accepted. UEFI only sets a minimum (16 KiB of array, 128 entries); gdisk and
    /// sfdisk write 128. 4096 leaves room for any real layout and bounds the array to 512 KiB at
    /// the usual 128-byte entry.
    public static let maxGPTEntries: UInt64 = 4096
    /// GPT entry size: UEFI says 128 x 2^n; more than 4 KiB has never been written by any tool.
    public static let maxGPTEntrySize: UInt32 = 4096
    /// Bytes of partition entry array read (and checksummed) at most: one read, well under `maxRead`.
    public static let maxGPTArrayBytes: UInt64 = 1 << 20
    /// Partitions whose start is probed for a filesystem (a few KiB read each).
    public static let maxFilesystemProbes = 128
    /// Findings of one kind (overlaps, out-of-range entries) listed before they are summarised.
    public static let maxFindingsPerKind = 16
    /// Apple partition map entries read: Apple's tools reserve 63 map blocks; xorriso writes a
    /// handful.
    public static let maxAPMEntries = 64
    /// GPT sector sizes tried: 512-byte disks and 4Kn disks (header at LBA 1 of either).
    public static let sectorSizes: [UInt64] = [512, 4096]
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    guard let table = try parse(ctx) else { return nil }
    var info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .raw, subformat: table.type, virtualSize: ctx.size)
    info.partitionTable = table.json.json
    info.findings = table.findings
    return info
  }

  /// One partition as the table describes it, in sectors.
  struct Extent {
    var number: Int
    var first: UInt64
    /// Inclusive.
    var last: UInt64
    var json: JSONObject
    var logical = false
  }

  /// The decoded table: its JSON description and findings.
  public struct Table: Sendable {
    public var type: String
    public var json = JSONObject()
    public var findings: [Finding] = []
  }

  /// Findings collector that caps repeats of one id, with what it needs to judge a hybrid ISO.
  struct Findings {
    /// Bytes of the ISO 9660 volume when the disk is also an ISO (CD001 at 32769). isohybrid
    /// layouts (xorriso, syslinux isohybrid) list the whole ISO as partition 1 from LBA 0 and the
    /// El Torito EFI image inside it as another partition: overlaps inside the volume are the
    /// layout, not corruption.
    var isoVolumeBytes: UInt64?
    /// Bytes of the disk: the input, less a fixed VHD's 512-byte footer when the table is read
    /// through a fixed VHD (its guest disk ends before the footer).
    var diskSize: UInt64 = 0
    var list: [Finding] = []
    var perKind: [String: Int] = [:]
    mutating func add(_ f: Finding) {
      let n = perKind[f.id, default: 0]
      perKind[f.id] = n + 1
      if n < Limits.maxFindingsPerKind {
        list.append(f)
      } else if n == Limits.maxFindingsPerKind {
        list.append(Finding(f.id, f.severity, "further \(f.id) findings are not listed"))
      }
    }
  }

  static let mbrSignature: [UInt8] = [0x55, 0xAA]
  static let gptSignature = Array("EFI PART".utf8)

  public static func parse(_ ctx: ProbeContext) throws(ImageError) -> Table? {
    let head = ctx.headReader("partition-table")
    let hasMBR = head.matches(mbrSignature, at: 510)
    var gptSector: UInt64?
    for ss in Limits.sectorSizes where head.matches(gptSignature, at: Int(ss)) {
      gptSector = ss
      break
    }
    var findings = Findings()
    var mbr: MBR?
    if hasMBR {
      // A boot sector of a filesystem (FAT floppy, NTFS, exFAT) also ends in 55 AA: it is not a
      // partition table, so arbitrary boot code is never read as partition entries.
      // Likewise a Linux kernel's boot sector (boot protocol header "HdrS" at 0x202).
      if gptSector == nil, FilesystemProbe.fat(head) != nil || FilesystemProbe.ntfs(head) != nil
        || FilesystemProbe.exfat(head) != nil || head.matches(Array("HdrS".utf8), at: 0x202)
      {
        return nil
      }
      mbr = MBR(head)
      if gptSector == nil, mbr == nil { return nil }
    }
    let apmBlock = apmBlockSize(head)
    guard gptSector != nil || mbr != nil || apmBlock != nil else { return nil }
    findings.diskSize = ctx.size
    if ctx.size >= 1024, let footer = try? ctx.tail(512, "partition-table"), footer.matches(Array("conectix".utf8), at: 0) {
      findings.diskSize = ctx.size - 512
    }
    // A volume larger than the disk (a hostile or truncated ISO) excuses nothing beyond the disk.
    findings.isoVolumeBytes = isoVolume(head).map { min($0, findings.diskSize) }
    // An Apple partition map (Mac-bootable hybrid ISOs) is reported with the MBR/GPT it sits beside.
    let apmJSON = try apmBlock.map { bs throws(ImageError) in try apm(ctx, blockSize: bs, findings: &findings) }
    var table = try dispatch(ctx, head, gptSector: gptSector, mbr: mbr, findings: &findings)
    if let apmJSON {
      if table.type == "apm" {
        if case let .object(pairs) = apmJSON { for (k, v) in pairs { table.json.set(k, v) } }
      } else {
        table.json.set("apm", apmJSON)
      }
    }
    table.findings = findings.list
    return table
  }

  static func dispatch(_ ctx: ProbeContext, _ head: ByteReader, gptSector: UInt64?, mbr: MBR?, findings: inout Findings)
    throws(ImageError) -> Table
  {
    if let ss = gptSector {
      // A second header at LBA 1 of the other sector size: readers with 512-byte and 4096-byte
      // logical sectors would see two different partition tables.
      let others = Limits.sectorSizes.filter { $0 != ss && head.matches(gptSignature, at: Int($0)) }
      if let other = others.first {
        findings.add(Finding("partition.gpt-multiple-sector-sizes", .warning, offset: other,
                             "GPT headers at LBA 1 for both \(ss)- and \(other)-byte sectors: the partitions a reader sees depend on the device's sector size; the \(ss)-byte table is reported"))
      }
      return try gpt(ctx, sectorSize: ss, mbr: mbr, findings: &findings)
    }
    guard let mbr else {
      var t = Table(type: "apm")
      t.json.set("type", "apm")
      return t
    }
    if mbr.protectiveEntries > 0 {
      findings.add(Finding("partition.gpt-header-missing", .corrupt, offset: 512,
                           "the MBR has a GPT protective (0xEE) entry but no GPT header is at LBA 1 (512- or 4096-byte sectors)"))
    }
    return try msdos(ctx, mbr, findings: &findings)
  }

  // MARK: Apple partition map

  /// Apple partition map (Inside Macintosh: Devices, "Partition Map Entry"): block 0 is the driver
  /// descriptor record, signature "ER" (2) and block size (2, BE); blocks 1..N are map entries:
  ///
  /// | offset | size | field |
  /// |---|---|---|
  /// | 0 | 2 | pmSig "PM" |
  /// | 4 | 4 | pmMapBlkCnt (entries in the map, BE) |
  /// | 8 | 4 | pmPyPartStart (first block, BE) |
  /// | 12 | 4 | pmPartBlkCnt (blocks, BE) |
  /// | 16 | 32 | pmPartName |
  /// | 48 | 32 | pmParType (`Apple_HFS`, `Apple_partition_map`, `Apple_Free`, ...) |
  static func apmBlockSize(_ head: ByteReader) -> UInt64? {
    guard head.matches([0x45, 0x52], at: 0), let bs = try? head.u16BE(at: 2, "sbBlkSize"),
          [512, 1024, 2048, 4096].contains(bs), head.matches([0x50, 0x4D], at: Int(bs))
    else { return nil }
    return UInt64(bs)
  }

  static func apm(_ ctx: ProbeContext, blockSize bs: UInt64, findings: inout Findings) throws(ImageError) -> JSON {
    var o = JSONObject()
    o.set("block-size", bs)
    let first = try ctx.reader(at: bs, count: Int(bs), "partition-table", "Apple partition map entry 1")
    let declared = UInt64(try first.u32BE(at: 4, "pmMapBlkCnt"))
    if declared > UInt64(Limits.maxAPMEntries) {
      findings.add(Finding("partition.apm-limit", .corrupt, field: "pmMapBlkCnt", offset: bs + 4,
                           "the Apple partition map declares \(declared) entries; imgtool reads at most \(Limits.maxAPMEntries)"))
    }
    let count = Int(min(max(declared, 1), UInt64(Limits.maxAPMEntries)))
    let map = ByteReader(try ctx.read(at: bs, count: count * Int(bs)), base: bs, format: "partition-table")
    var entries: [JSON] = []
    let diskBlocks = findings.diskSize / bs
    for i in 0..<count {
      let at = i * Int(bs)
      guard map.matches([0x50, 0x4D], at: at) else {
        findings.add(Finding("partition.apm-entry-signature", .corrupt, offset: map.base + UInt64(at),
                             "Apple partition map entry \(i + 1) of \(count) lacks its PM signature (or lies beyond the end of the disk)"))
        break
      }
      let start = UInt64(try map.u32BE(at: at + 8, "pmPyPartStart"))
      let blocks = UInt64(try map.u32BE(at: at + 12, "pmPartBlkCnt"))
      var e = JSONObject()
      e.set("number", i + 1)
      let name = Text.ascii(try map.bytes(at: at + 16, 32, "pmPartName"))
      e.set("name", name.isEmpty ? nil : name)
      e.set("type", Text.ascii(try map.bytes(at: at + 48, 32, "pmParType")))
      e.set("first-block", start)
      e.set("blocks", blocks)
      e.set("start", start * bs)
      e.set("size", blocks * bs)
      if blocks > 0, start + blocks > diskBlocks {
        e.set("beyond-end", true)
        findings.add(Finding("partition.beyond-end", .corrupt, offset: map.base + UInt64(at) + 8,
                             "Apple partition \(i + 1) (blocks \(start)-\(start + blocks - 1) of \(bs) bytes) extends past the end of the disk (\(diskBlocks) blocks)"))
      }
      entries.append(e.json)
    }
    o.set("partitions", JSON.array(entries))
    return o.json
  }

  /// The ISO 9660 volume size from the primary volume descriptor at sector 16, if there is one.
  static func isoVolume(_ head: ByteReader) -> UInt64? {
    let pvd = 16 * 2048
    guard head.matches(Array("CD001".utf8), at: pvd + 1), let blocks = try? head.u32LE(at: pvd + 80, "volume space size"),
          let blockSize = try? head.u16LE(at: pvd + 128, "logical block size"), [512, 1024, 2048].contains(blockSize)
    else { return nil }
    return UInt64(blocks) * UInt64(blockSize)
  }

  /// Whether sectors `first...last` lie inside the ISO volume of a hybrid ISO.
  static func insideISO(_ first: UInt64, _ last: UInt64, _ ss: UInt64, _ findings: Findings) -> Bool {
    guard let iso = findings.isoVolumeBytes else { return false }
    let (end, o) = last.addingReportingOverflow(1)
    return !o && first <= last && end <= iso / ss
  }

  static func hybridLayout(_ message: String, _ findings: inout Findings) {
    findings.add(Finding("partition.iso-hybrid-layout", .info, message))
  }

  // MARK: MBR

  /// Classic MBR (sector 0):
  ///
  /// | offset | size | field |
  /// |---|---|---|
  /// | 0 | 440 | boot code |
  /// | 440 | 4 | disk signature |
  /// | 444 | 2 | copy-protect marker (0x5A5A) or zero |
  /// | 446 | 4 x 16 | partition entries |
  /// | 510 | 2 | 0x55 0xAA |
  ///
  /// Entry (16 bytes): status (0x80 active, 0x00), first CHS (3), type (1), last CHS (3),
  /// first LBA (4, LE), sector count (4, LE).
  struct MBREntry {
    var slot: Int
    var status: UInt8
    var type: UInt8
    var firstLBA: UInt32
    var sectors: UInt32
    var firstCHS: String
    var lastCHS: String

    init(_ r: ByteReader, at: Int, slot: Int) throws(ImageError) {
      self.slot = slot
      status = try r.u8(at: at, "status")
      firstCHS = MBREntry.chs(try r.bytes(at: at + 1, 3, "first CHS"))
      lastCHS = MBREntry.chs(try r.bytes(at: at + 5, 3, "last CHS"))
      type = try r.u8(at: at + 4, "partition type")
      firstLBA = try r.u32LE(at: at + 8, "first LBA")
      sectors = try r.u32LE(at: at + 12, "sector count")
    }

    /// CHS address: head (1), sector in bits 0-5 and cylinder bits 8-9 in bits 6-7 (1), cylinder
    /// bits 0-7 (1); rendered cylinder/head/sector.
    static func chs(_ b: ArraySlice<UInt8>) -> String {
      let a = Array(b)
      guard a.count == 3 else { return "" }
      let cylinder = Int(a[1] & 0xC0) << 2 | Int(a[2])
      return "\(cylinder)/\(a[0])/\(a[1] & 0x3F)"
    }

    var isEmpty: Bool { type == 0 && firstLBA == 0 && sectors == 0 }
    var isExtended: Bool { type == 0x05 || type == 0x0F || type == 0x85 }
  }

  struct MBR {
    var signature: UInt32
    var entries: [MBREntry]
    var protectiveEntries: Int { entries.filter { $0.type == 0xEE }.count }

    /// nil when the status bytes show this is not a partition table (Linux and libblkid accept
    /// only 0x00 and 0x80).
    init?(_ r: ByteReader) {
      guard let sig = try? r.u32LE(at: 440, "disk signature") else { return nil }
      signature = sig
      entries = []
      for i in 0..<4 {
        guard let e = try? MBREntry(r, at: 446 + 16 * i, slot: i + 1) else { return nil }
        guard e.status == 0 || e.status == 0x80 else { return nil }
        if !e.isEmpty { entries.append(e) }
      }
    }
  }

  static let mbrTypeNames: [UInt8: String] = [
    0x01: "FAT12", 0x04: "FAT16 <32M", 0x05: "Extended", 0x06: "FAT16", 0x07: "HPFS/NTFS/exFAT",
    0x0B: "W95 FAT32", 0x0C: "W95 FAT32 (LBA)", 0x0E: "W95 FAT16 (LBA)", 0x0F: "W95 extended (LBA)",
    0x11: "Hidden FAT12", 0x14: "Hidden FAT16 <32M", 0x16: "Hidden FAT16", 0x17: "Hidden HPFS/NTFS",
    0x1B: "Hidden W95 FAT32", 0x1C: "Hidden W95 FAT32 (LBA)", 0x1E: "Hidden W95 FAT16 (LBA)",
    0x27: "Hidden NTFS WinRE", 0x82: "Linux swap", 0x83: "Linux", 0x85: "Linux extended", 0x8E: "Linux LVM",
    0x96: "ISO 9660 (CHRP)", 0xA5: "FreeBSD", 0xA6: "OpenBSD", 0xA8: "Darwin UFS", 0xA9: "NetBSD",
    0xAB: "Darwin boot", 0xAF: "HFS / HFS+", 0xBE: "Solaris boot", 0xBF: "Solaris", 0xCD: "ISO 9660 (Linux)",
    0xDA: "Non-FS data", 0xEE: "GPT protective", 0xEF: "EFI System", 0xFB: "VMware VMFS", 0xFC: "VMware VMKCORE",
    0xFD: "Linux RAID autodetect",
  ]

  static func mbrJSON(_ e: MBREntry, number: Int, firstLBA: UInt64, sectorSize: UInt64, logical: Bool) -> JSONObject {
    var o = JSONObject()
    o.set("number", number)
    o.set("type", hex(e.type))
    o.set("type-name", mbrTypeNames[e.type])
    o.set("bootable", e.status == 0x80)
    if logical { o.set("logical", true) }
    o.set("first-lba", firstLBA)
    o.set("sectors", UInt64(e.sectors))
    o.set("first-chs", e.firstCHS)
    o.set("last-chs", e.lastCHS)
    o.set("start", firstLBA * sectorSize)
    o.set("size", UInt64(e.sectors) * sectorSize)
    return o
  }

  static func msdos(_ ctx: ProbeContext, _ mbr: MBR, findings: inout Findings) throws(ImageError) -> Table {
    let ss: UInt64 = 512
    var table = Table(type: "mbr")
    table.json.set("type", "mbr")
    table.json.set("sector-size", ss)
    table.json.set("disk-signature", hex8(mbr.signature))
    var data: [Extent] = []
    var containers: [Extent] = []
    var nextLogical = 5
    for e in mbr.entries {
      let first = UInt64(e.firstLBA)
      let json = mbrJSON(e, number: e.slot, firstLBA: first, sectorSize: ss, logical: false)
      let extent = Extent(number: e.slot, first: first, last: first + UInt64(max(e.sectors, 1)) - 1, json: json)
      if e.isExtended {
        containers.append(extent)
        data.append(extent)
        do {
          try walkExtended(ctx, start: first, sectors: UInt64(e.sectors), sectorSize: ss, next: &nextLogical,
                           into: &data, findings: &findings)
        } catch where error.kind == .needsSeekable {
          // A stream keeps only its head and tail: list what was read and say what was not.
          findings.add(Finding("partition.needs-seekable", .warning, offset: error.offset,
                               "the extended partition's EBR chain continues beyond the bytes a stream keeps; its remaining logical partitions are not listed (pass a file)"))
        }
      } else {
        data.append(extent)
      }
    }
    checkExtents(ctx, &data, sectorSize: ss, containers: containers, findings: &findings)
    table.json.set("partitions", JSON.array(data.map { $0.json.json }))
    table.findings = findings.list
    return table
  }

  /// Follows the EBR chain of the extended partition starting at sector `start`. Each EBR holds the
  /// logical partition relative to itself and a link to the next EBR relative to the extended
  /// partition's start; a link back to an EBR already visited is a loop.
  static func walkExtended(_ ctx: ProbeContext, start: UInt64, sectors: UInt64, sectorSize ss: UInt64,
                           next: inout Int, into out: inout [Extent], findings: inout Findings) throws(ImageError)
  {
    var ebr = start
    var visited = Set<UInt64>()
    while true {
      guard !visited.contains(ebr) else {
        findings.add(Finding("partition.ebr-loop", .corrupt, offset: ebr &* ss,
                             "the extended partition's EBR chain links back to sector \(ebr): a reader following it never ends"))
        return
      }
      guard visited.count < Limits.maxLogicalPartitions else {
        findings.add(Finding("partition.ebr-limit", .corrupt, offset: ebr &* ss,
                             "the extended partition chain has more than \(Limits.maxLogicalPartitions) logical partitions; the rest is not read"))
        return
      }
      visited.insert(ebr)
      let (offset, o) = ebr.multipliedReportingOverflow(by: ss)
      guard !o, offset < findings.diskSize, findings.diskSize - offset >= 512 else {
        findings.add(Finding("partition.ebr-beyond-end", .corrupt, offset: o ? nil : offset,
                             "an EBR of the extended partition is at sector \(ebr), beyond the end of the disk"))
        return
      }
      let r = try ctx.reader(at: offset, count: 512, "partition-table", "EBR")
      guard r.matches(mbrSignature, at: 510) else {
        findings.add(Finding("partition.ebr-signature", .corrupt, offset: offset + 510,
                             "the EBR at sector \(ebr) lacks the 55 AA signature; the logical partition chain stops there"))
        return
      }
      let logical = try MBREntry(r, at: 446, slot: 0)
      let link = try MBREntry(r, at: 462, slot: 0)
      if logical.type != 0, logical.sectors != 0 {
        let first = ebr + UInt64(logical.firstLBA)  // both < 2^33: no overflow
        let json = mbrJSON(logical, number: next, firstLBA: first, sectorSize: ss, logical: true)
        var extent = Extent(number: next, first: first, last: first + UInt64(logical.sectors) - 1, json: json, logical: true)
        if extent.first < start || extent.last >= start + max(sectors, 1) {
          extent.json.set("outside-extended", true)
          findings.add(Finding("partition.logical-outside-extended", .corrupt, offset: offset + 446,
                               "logical partition \(next) (sectors \(extent.first)-\(extent.last)) lies outside its extended partition (sectors \(start)-\(start + max(sectors, 1) - 1))"))
        }
        out.append(extent)
        next += 1
      }
      guard link.isExtended else { return }
      ebr = start + UInt64(link.firstLBA)
    }
  }

  // MARK: GPT

  /// GPT header (UEFI 2.10, table 5-5), at LBA 1 and, as a backup, at the last LBA:
  ///
  /// | offset | size | field |
  /// |---|---|---|
  /// | 0 | 8 | Signature "EFI PART" |
  /// | 8 | 4 | Revision (0x00010000) |
  /// | 12 | 4 | HeaderSize (92 .. sector size) |
  /// | 16 | 4 | HeaderCRC32 (over HeaderSize bytes, this field zero) |
  /// | 20 | 4 | Reserved |
  /// | 24 | 8 | MyLBA |
  /// | 32 | 8 | AlternateLBA |
  /// | 40 | 8 | FirstUsableLBA |
  /// | 48 | 8 | LastUsableLBA |
  /// | 56 | 16 | DiskGUID |
  /// | 72 | 8 | PartitionEntryLBA |
  /// | 80 | 4 | NumberOfPartitionEntries |
  /// | 84 | 4 | SizeOfPartitionEntry (128 x 2^n) |
  /// | 88 | 4 | PartitionEntryArrayCRC32 |
  struct GPTHeader {
    var offset: UInt64
    var revision: UInt32
    var headerSize: UInt32
    var storedCRC: UInt32
    var computedCRC: UInt32
    var myLBA: UInt64
    var alternateLBA: UInt64
    var firstUsable: UInt64
    var lastUsable: UInt64
    var diskGUID: String
    var entriesLBA: UInt64
    var entryCount: UInt32
    var entrySize: UInt32
    var entriesCRC: UInt32

    init(_ r: ByteReader) throws(ImageError) {
      var r = r
      offset = r.base
      _ = try r.bytes(8, "Signature")
      revision = try r.u32LE("Revision")
      headerSize = try r.u32LE("HeaderSize")
      storedCRC = try r.u32LE("HeaderCRC32")
      try r.skip(4, "Reserved")
      myLBA = try r.u64LE("MyLBA")
      alternateLBA = try r.u64LE("AlternateLBA")
      firstUsable = try r.u64LE("FirstUsableLBA")
      lastUsable = try r.u64LE("LastUsableLBA")
      diskGUID = try r.guidMixedEndian("DiskGUID")
      entriesLBA = try r.u64LE("PartitionEntryLBA")
      entryCount = try r.u32LE("NumberOfPartitionEntries")
      entrySize = try r.u32LE("SizeOfPartitionEntry")
      entriesCRC = try r.u32LE("PartitionEntryArrayCRC32")
      // The CRC covers HeaderSize bytes with the CRC field zeroed; a HeaderSize outside
      // 92...sector size cannot be checked (reported by the caller).
      let size = Int(min(UInt64(headerSize), UInt64(r.count)))
      var crc = CRC32.update(0, r.bytes[0..<16])
      crc = CRC32.update(crc, [0, 0, 0, 0])
      computedCRC = size >= 92 ? CRC32.update(crc, r.bytes[20..<size]) : ~storedCRC
    }

    var checksumOK: Bool { storedCRC == computedCRC }
  }

  static let gptTypeNames: [String: String] = [
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
    "ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
    "44479540-f297-41b2-9af7-d131d5f0458a": "Linux root (x86)",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "69dad710-2ce4-4e3c-b16c-21a1d49abed3": "Linux root (ARM)",
    "b921b045-1df0-41c3-af44-4c6f280d3fae": "Linux root (ARM-64)",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux home",
    "3b8f8425-20e0-4f3b-907f-1a25a76f98e8": "Linux server data",
    "8da63339-0007-60c0-c436-083ac8230908": "Linux reserved",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery environment",
    "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS/HFS+",
    "7c3457ef-0000-11aa-aa11-00306543ecac": "Apple APFS",
    "516e7cb6-6ecf-11d6-8ff8-00022d09712b": "FreeBSD UFS",
    "6a898cc3-1dd2-11b2-99a6-080020736631": "Solaris /usr or Apple ZFS",
    "9e1a2d38-c612-4316-aa26-8b49521e5a8b": "PowerPC PReP boot",
    "aa31e02a-400f-11db-9590-000c2911d1b8": "VMware VMFS",
  ]

  static func gpt(_ ctx: ProbeContext, sectorSize ss: UInt64, mbr: MBR?, findings: inout Findings) throws(ImageError) -> Table {
    var table = Table(type: "gpt")
    table.json.set("type", "gpt")
    table.json.set("sector-size", ss)
    let diskSectors = findings.diskSize / ss
    let lastLBA = diskSectors > 0 ? diskSectors - 1 : 0

    // The MBR in front of a GPT: protective (one 0xEE entry), hybrid (0xEE plus MBR partitions
    // mirroring GPT ones, for firmware that only reads MBRs), or missing.
    if let mbr {
      var m = JSONObject()
      let others = mbr.entries.filter { $0.type != 0xEE }
      let kind = mbr.protectiveEntries == 0 ? "legacy" : others.isEmpty ? "protective" : "hybrid"
      m.set("kind", kind)
      m.set("disk-signature", hex8(mbr.signature))
      m.set("partitions", JSON.array(mbr.entries.map {
        mbrJSON($0, number: $0.slot, firstLBA: UInt64($0.firstLBA), sectorSize: ss, logical: false).json
      }))
      table.json.set("mbr", m.json)
      switch kind {
      case "hybrid":
        findings.add(Finding("partition.mbr-hybrid", .info, offset: 446,
                             "hybrid MBR: besides the GPT protective entry the MBR lists \(others.count) partition(s) of its own; MBR-only and GPT readers see different tables"))
      case "legacy" where findings.isoVolumeBytes != nil:
        hybridLayout("the GPT of this hybrid ISO has no protective MBR entry: the MBR lists the ISO for BIOS boot (isohybrid layout)", &findings)
      case "legacy":
        findings.add(Finding("partition.gpt-no-protective-mbr", .warning, offset: 446,
                             "a GPT is present but the MBR has no protective (0xEE) entry: MBR-only tools see other partitions or free space"))
      default: break
      }
      for e in others {
        let first = UInt64(e.firstLBA), end = UInt64(e.firstLBA) + UInt64(e.sectors)
        if e.sectors > 0, end > diskSectors {
          findings.add(Finding("partition.beyond-end", .corrupt, offset: 446 + UInt64(e.slot - 1) * 16,
                               "MBR partition \(e.slot) (sectors \(first)-\(end - 1)) extends past the end of the disk (\(diskSectors) sectors)"))
        }
      }
    } else {
      findings.add(Finding("partition.gpt-no-protective-mbr", .warning, offset: 510,
                           "a GPT is present but sector 0 has no MBR signature (55 AA): MBR-only tools see an empty disk"))
    }

    let primary = try GPTHeader(try ctx.reader(at: ss, count: Int(ss), "partition-table", "GPT header"))
    var h = JSONObject()
    h.set("revision", "\(primary.revision >> 16).\(primary.revision & 0xffff)")
    h.set("header-size", UInt64(primary.headerSize))
    h.set("my-lba", primary.myLBA)
    h.set("alternate-lba", primary.alternateLBA)
    h.set("first-usable-lba", primary.firstUsable)
    h.set("last-usable-lba", primary.lastUsable)
    h.set("entries-lba", primary.entriesLBA)
    h.set("entry-count", UInt64(primary.entryCount))
    h.set("entry-size", UInt64(primary.entrySize))
    table.json.set("disk-guid", primary.diskGUID)
    if primary.headerSize < 92 || UInt64(primary.headerSize) > ss {
      findings.add(Finding("partition.gpt-header-invalid", .corrupt, field: "HeaderSize", offset: ss + 12,
                           "GPT HeaderSize is \(primary.headerSize), must be 92 to \(ss) (the sector size)"))
    } else if !primary.checksumOK {
      findings.add(Finding("partition.gpt-header-checksum", .corrupt, field: "HeaderCRC32", offset: ss + 16,
                           "GPT header CRC32 at \(hex(ss + 16)) is \(hex8(primary.storedCRC)), computed \(hex8(primary.computedCRC))"))
    }
    if primary.myLBA != 1 {
      findings.add(Finding("partition.gpt-header-invalid", .corrupt, field: "MyLBA", offset: ss + 24,
                           "GPT header at LBA 1 says MyLBA is \(primary.myLBA)"))
    }
    if primary.firstUsable > primary.lastUsable || primary.lastUsable > lastLBA {
      findings.add(Finding("partition.gpt-usable-range", .corrupt, field: "LastUsableLBA", offset: ss + 48,
                           "GPT usable range \(primary.firstUsable)-\(primary.lastUsable) is empty or ends beyond the disk's last LBA \(lastLBA)"))
    }

    if let mbr { checkMBRAgainstGPT(mbr, primary, sectorSize: ss, lastLBA: lastLBA, findings: &findings) }

    // The partition entry array.
    var extents: [Extent] = []
    var arrayBytes: [UInt8]?
    if let (offset, count) = entryArray(primary, sectorSize: ss, diskSize: findings.diskSize, findings: &findings) {
      let bytes = try ctx.source.readExactly(at: offset, count: count, format: "partition-table", field: "GPT partition entries")
      arrayBytes = bytes
      let crc = CRC32.checksum(bytes)
      if crc != primary.entriesCRC {
        findings.add(Finding("partition.gpt-entries-checksum", .corrupt, field: "PartitionEntryArrayCRC32", offset: ss + 88,
                             "GPT partition entry array CRC32 is \(hex8(primary.entriesCRC)) in the header, computed \(hex8(crc))"))
      }
      extents = try gptEntries(ByteReader(bytes, base: offset, format: "partition-table"), primary, findings: &findings)
      // The array must not share sectors with the header or the usable area.
      let arrayEnd = primary.entriesLBA + Checked.ceilDiv(UInt64(count), ss) - 1
      if primary.entriesLBA <= 1 || (primary.entriesLBA <= primary.lastUsable && arrayEnd >= primary.firstUsable) {
        findings.add(Finding("partition.gpt-entries-overlap", .corrupt, field: "PartitionEntryLBA", offset: ss + 72,
                             "the GPT entry array (LBA \(primary.entriesLBA)-\(arrayEnd)) overlaps the header or the usable area (\(primary.firstUsable)-\(primary.lastUsable))"))
      }
    }

    // The backup header at the last LBA (AlternateLBA names it).
    do {
      h.set("backup", try backup(ctx, primary, arrayBytes: arrayBytes, sectorSize: ss, lastLBA: lastLBA, findings: &findings))
    } catch where error.kind == .needsSeekable {
      h.set("backup", "unread")
      findings.add(Finding("partition.needs-seekable", .warning, offset: error.offset,
                           "the backup GPT header is outside the bytes a stream keeps and was not checked (pass a file)"))
    }
    table.json.set("header", h.json)

    // Partitions must lie in the usable area and inside the disk.
    for e in extents {
      if e.first < primary.firstUsable || e.last > primary.lastUsable {
        if insideISO(e.first, e.last, ss, findings) {
          hybridLayout("GPT partition \(e.number) (LBA \(e.first)-\(e.last)) lies outside the usable area but inside the ISO 9660 volume: isohybrid lists the whole ISO as a partition", &findings)
          continue
        }
        findings.add(Finding("partition.outside-usable", .corrupt, offset: nil,
                             "GPT partition \(e.number) (LBA \(e.first)-\(e.last)) lies outside the usable area \(primary.firstUsable)-\(primary.lastUsable)"))
      }
    }
    checkExtents(ctx, &extents, sectorSize: ss, containers: [], findings: &findings)
    table.json.set("partitions", JSON.array(extents.map { $0.json.json }))
    table.findings = findings.list
    return table
  }

  /// The MBR partitions of a hybrid MBR must not overlap each other nor the GPT's own sectors (the
  /// headers and entry arrays, outside the usable range): a write through the MBR view would
  /// destroy the GPT. The 0xEE entry itself covers the GPT by design and is not checked.
  static func checkMBRAgainstGPT(_ mbr: MBR, _ hdr: GPTHeader, sectorSize ss: UInt64, lastLBA: UInt64, findings: inout Findings) {
    let data = mbr.entries.filter { $0.type != 0xEE && $0.sectors > 0 }
    var metadata: [(UInt64, UInt64)] = []
    if hdr.firstUsable > 1, hdr.firstUsable <= hdr.lastUsable { metadata.append((1, hdr.firstUsable - 1)) }
    if hdr.firstUsable <= hdr.lastUsable, hdr.lastUsable < lastLBA { metadata.append((hdr.lastUsable + 1, lastLBA)) }
    for (i, e) in data.enumerated() {
      let first = UInt64(e.firstLBA), last = UInt64(e.firstLBA) + UInt64(e.sectors) - 1
      for (a, b) in metadata where first <= b && a <= last {
        let lo = max(first, a), hi = min(last, b)
        if insideISO(lo, hi, ss, findings) {
          hybridLayout("MBR partition \(e.slot) covers GPT sectors \(lo)-\(hi) inside the ISO 9660 volume (isohybrid layout)", &findings)
        } else {
          findings.add(Finding("partition.mbr-overlaps-gpt", .corrupt, offset: 446 + UInt64(e.slot - 1) * 16,
                               "MBR partition \(e.slot) (sectors \(first)-\(last)) covers GPT header or entry sectors \(lo)-\(hi): writing through the MBR view destroys the GPT"))
        }
      }
      for o in data[(i + 1)...] {
        let of = UInt64(o.firstLBA), ol = UInt64(o.firstLBA) + UInt64(o.sectors) - 1
        guard first <= ol && of <= last else { continue }
        if insideISO(max(first, of), min(last, ol), ss, findings) {
          hybridLayout("MBR partitions \(e.slot) and \(o.slot) overlap inside the ISO 9660 volume (isohybrid layout)", &findings)
        } else {
          findings.add(Finding("partition.overlap", .corrupt, offset: 446,
                               "MBR partitions \(e.slot) (sectors \(first)-\(last)) and \(o.slot) (sectors \(of)-\(ol)) overlap"))
        }
      }
    }
  }

  /// Validates the entry array's geometry; returns its byte offset and length, or nil (with a
  /// finding) when it cannot be read.
  static func entryArray(_ hdr: GPTHeader, sectorSize ss: UInt64, diskSize: UInt64, findings: inout Findings)
    -> (UInt64, Int)?
  {
    let field = hdr.offset + 80
    guard hdr.entrySize >= 128, hdr.entrySize % 8 == 0, hdr.entrySize <= Limits.maxGPTEntrySize else {
      findings.add(Finding("partition.gpt-entries-invalid", .corrupt, field: "SizeOfPartitionEntry", offset: hdr.offset + 84,
                           "GPT SizeOfPartitionEntry is \(hdr.entrySize), must be a multiple of 8 from 128 to \(Limits.maxGPTEntrySize)"))
      return nil
    }
    guard UInt64(hdr.entryCount) <= Limits.maxGPTEntries,
          UInt64(hdr.entryCount) * UInt64(hdr.entrySize) <= Limits.maxGPTArrayBytes
    else {
      findings.add(Finding("partition.gpt-entries-invalid", .corrupt, field: "NumberOfPartitionEntries", offset: field,
                           "GPT declares \(hdr.entryCount) entries of \(hdr.entrySize) bytes; imgtool reads at most \(Limits.maxGPTEntries) entries and \(Limits.maxGPTArrayBytes) bytes"))
      return nil
    }
    let bytes = UInt64(hdr.entryCount) * UInt64(hdr.entrySize)
    let (offset, o) = hdr.entriesLBA.multipliedReportingOverflow(by: ss)
    guard !o, offset <= diskSize, bytes <= diskSize - offset else {
      findings.add(Finding("partition.gpt-entries-beyond-end", .corrupt, field: "PartitionEntryLBA", offset: hdr.offset + 72,
                           "the GPT entry array at LBA \(hdr.entriesLBA) (\(bytes) bytes) ends beyond the end of the disk (\(diskSize) bytes)"))
      return nil
    }
    return bytes == 0 ? nil : (offset, Int(bytes))
  }

  /// GPT partition entry (UEFI 2.10, table 5-6): PartitionTypeGUID (16), UniquePartitionGUID (16),
  /// StartingLBA (8), EndingLBA (8, inclusive), Attributes (8), PartitionName (72, UTF-16LE).
  static func gptEntries(_ array: ByteReader, _ hdr: GPTHeader, findings: inout Findings) throws(ImageError) -> [Extent] {
    var out: [Extent] = []
    let size = Int(hdr.entrySize)
    for i in 0..<Int(hdr.entryCount) {
      let at = i * size
      let typeBytes = try array.bytes(at: at, 16, "PartitionTypeGUID")
      if GUID.isZero(typeBytes) { continue }
      let typeGUID = GUID.mixedEndian(typeBytes)
      let first = try array.u64LE(at: at + 32, "StartingLBA")
      let last = try array.u64LE(at: at + 40, "EndingLBA")
      let attributes = try array.u64LE(at: at + 48, "Attributes")
      var o = JSONObject()
      o.set("number", i + 1)
      o.set("type-guid", typeGUID)
      o.set("type-name", gptTypeNames[typeGUID])
      o.set("guid", GUID.mixedEndian(try array.bytes(at: at + 16, 16, "UniquePartitionGUID")))
      let name = Text.utf16LE(try array.bytes(at: at + 56, 72, "PartitionName"))
      o.set("name", name.isEmpty ? nil : name)
      o.set("first-lba", first)
      o.set("last-lba", last)
      if attributes != 0 {
        o.set("attributes", hex(attributes))
        var flags: [JSON] = []
        if attributes & 1 != 0 { flags.append(.string("required")) }
        if attributes & 2 != 0 { flags.append(.string("no-block-io")) }
        if attributes & 4 != 0 { flags.append(.string("legacy-bios-bootable")) }
        if attributes & (1 << 60) != 0 { flags.append(.string("read-only")) }
        if attributes & (1 << 62) != 0 { flags.append(.string("hidden")) }
        if attributes & (1 << 63) != 0 { flags.append(.string("no-automount")) }
        if !flags.isEmpty { o.set("attribute-flags", JSON.array(flags)) }
      }
      guard first <= last else {
        findings.add(Finding("partition.invalid-range", .corrupt, offset: array.base + UInt64(at) + 32,
                             "GPT partition \(i + 1) starts at LBA \(first) after its end LBA \(last)"))
        o.set("invalid", true)
        continue
      }
      out.append(Extent(number: i + 1, first: first, last: last, json: o))
    }
    return out
  }

  /// Checks the backup header (and its copy of the entry array); returns a status word for the JSON.
  static func backup(_ ctx: ProbeContext, _ primary: GPTHeader, arrayBytes: [UInt8]?, sectorSize ss: UInt64, lastLBA: UInt64,
                     findings: inout Findings) throws(ImageError) -> String
  {
    var candidates = [primary.alternateLBA]
    if primary.alternateLBA != lastLBA { candidates.append(lastLBA) }
    for lba in candidates {
      let (offset, o) = lba.multipliedReportingOverflow(by: ss)
      guard !o, lba > 1, offset < findings.diskSize, findings.diskSize - offset >= ss else { continue }
      let r = try ctx.reader(at: offset, count: Int(ss), "partition-table", "GPT backup header")
      guard r.matches(gptSignature, at: 0) else { continue }
      let b = try GPTHeader(r)
      if lba != primary.alternateLBA {
        findings.add(Finding("partition.gpt-backup-location", .warning, field: "AlternateLBA", offset: ss + 32,
                             "the primary GPT header puts the backup at LBA \(primary.alternateLBA) but it is at the last LBA \(lba)"))
      } else if lba != lastLBA {
        findings.add(Finding("partition.gpt-backup-location", .warning, field: "AlternateLBA", offset: ss + 32,
                             "the GPT backup header is at LBA \(lba), not at the disk's last LBA \(lastLBA): the disk was resized without moving it (sgdisk -e fixes this)"))
      }
      guard b.headerSize >= 92, UInt64(b.headerSize) <= ss, b.checksumOK else {
        findings.add(Finding("partition.gpt-backup-checksum", .corrupt, field: "HeaderCRC32", offset: offset + 16,
                             "the backup GPT header's CRC32 is \(hex8(b.storedCRC)), computed \(hex8(b.computedCRC))"))
        return "corrupt"
      }
      var differs: [String] = []
      if b.myLBA != lba { differs.append("MyLBA") }
      if b.alternateLBA != 1 { differs.append("AlternateLBA") }
      if b.diskGUID != primary.diskGUID { differs.append("DiskGUID") }
      if b.firstUsable != primary.firstUsable || b.lastUsable != primary.lastUsable { differs.append("usable range") }
      if b.entryCount != primary.entryCount || b.entrySize != primary.entrySize { differs.append("entry geometry") }
      if b.entriesCRC != primary.entriesCRC { differs.append("PartitionEntryArrayCRC32") }
      if !differs.isEmpty {
        findings.add(Finding("partition.gpt-backup-mismatch", .corrupt, offset: offset,
                             "the backup GPT header disagrees with the primary: \(differs.joined(separator: ", "))"))
        return "mismatch"
      }
      // Same geometry and checksum: the backup array must hold the same bytes.
      if let arrayBytes, let (aOffset, count) = entryArray(b, sectorSize: ss, diskSize: findings.diskSize, findings: &findings),
         count == arrayBytes.count
      {
        let copy = try ctx.source.readExactly(at: aOffset, count: count, format: "partition-table", field: "GPT backup entries")
        if CRC32.checksum(copy) != b.entriesCRC {
          findings.add(Finding("partition.gpt-backup-entries-checksum", .corrupt, offset: aOffset,
                               "the backup GPT partition entry array does not match its CRC32 \(hex8(b.entriesCRC))"))
          return "corrupt"
        }
      }
      return "ok"
    }
    findings.add(Finding("partition.gpt-backup-missing", .warning, offset: primary.alternateLBA &* ss,
                         "no backup GPT header at LBA \(primary.alternateLBA) or at the last LBA \(lastLBA): the image may be truncated"))
    return "missing"
  }

  // MARK: shared checks

  /// Range and overlap checks, plus a filesystem probe at each partition start.
  static func checkExtents(_ ctx: ProbeContext, _ extents: inout [Extent], sectorSize ss: UInt64, containers: [Extent],
                           findings: inout Findings)
  {
    let diskSectors = findings.diskSize / ss
    let isContainer = Set(containers.map(\.number))
    for i in extents.indices {
      let e = extents[i]
      if e.last >= diskSectors {
        extents[i].json.set("beyond-end", true)
        findings.add(Finding("partition.beyond-end", .corrupt,
                             "partition \(e.number) (sectors \(e.first)-\(e.last)) extends past the end of the disk (\(diskSectors) sectors of \(ss) bytes)"))
      }
    }
    // Overlaps among data partitions (an extended partition legitimately contains its logical
    // ones), then each extended container against the primaries and the other containers.
    let dataIndices = extents.indices.filter { !isContainer.contains(extents[$0].number) }
    let order = dataIndices.sorted { extents[$0].first < extents[$1].first }
    var reach: Int?  // the extent seen so far that ends last
    for idx in order {
      let e = extents[idx]
      if let p = reach, extents[p].last >= e.first { overlap(extents[p], e, ss, &findings) }
      if reach.map({ extents[$0].last < e.last }) ?? true { reach = idx }
    }
    for (ci, c) in containers.enumerated() {
      for e in extents where !isContainer.contains(e.number) && !e.logical {
        if e.first <= c.last && c.first <= e.last { overlap(c, e, ss, &findings) }
      }
      for d in containers[(ci + 1)...] where d.first <= c.last && c.first <= d.last { overlap(c, d, ss, &findings) }
    }
    // A filesystem at each data partition's start (superblock region only).
    var probed = 0
    for i in extents.indices where !isContainer.contains(extents[i].number) {
      guard probed < Limits.maxFilesystemProbes else { break }
      probed += 1
      let e = extents[i]
      let (start, o) = e.first.multipliedReportingOverflow(by: ss)
      guard !o, start < findings.diskSize else { continue }
      let room = findings.diskSize - start
      let span = e.last - e.first  // first <= last was checked
      let length = span >= room / ss ? room : (span + 1) * ss
      do {
        if let fs = try FilesystemProbe.describe(ctx, at: start, length: length, inPartition: true) {
          extents[i].json.set("filesystem", fs.json.json)
          for f in fs.findings { findings.add(f) }
        }
      } catch {
        extents[i].json.set("filesystem-error", error.description)
      }
    }
  }

  static func overlap(_ a: Extent, _ b: Extent, _ ss: UInt64, _ findings: inout Findings) {
    if insideISO(max(a.first, b.first), min(a.last, b.last), ss, findings) {
      hybridLayout("partitions \(a.number) and \(b.number) overlap inside the ISO 9660 volume, as isohybrid layouts do (the ISO and a boot image in it)", &findings)
      return
    }
    findings.add(Finding("partition.overlap", .corrupt,
                         "partitions \(a.number) (sectors \(a.first)-\(a.last)) and \(b.number) (sectors \(b.first)-\(b.last)) overlap"))
  }

  static func hex8(_ v: UInt32) -> String {
    let h = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - h.count) + h
  }
}
