import XCTest
@testable import FormatProbe

/// Little-endian field writers for the builders.
extension Array where Element == UInt8 {
  mutating func put(_ bytes: [UInt8], at: Int) {
    for (i, b) in bytes.enumerated() where at + i < count { self[at + i] = b }
  }
  mutating func le16(_ v: UInt16, at: Int) { put(Swift.withUnsafeBytes(of: v.littleEndian, Array.init), at: at) }
  mutating func le32(_ v: UInt32, at: Int) { put(Swift.withUnsafeBytes(of: v.littleEndian, Array.init), at: at) }
  mutating func le64(_ v: UInt64, at: Int) { put(Swift.withUnsafeBytes(of: v.littleEndian, Array.init), at: at) }
}

/// A GUID string to its on-disk (mixed-endian) bytes.
func guidBytes(_ s: String) -> [UInt8] {
  let hex = s.replacingOccurrences(of: "-", with: "")
  var b: [UInt8] = []
  var i = hex.startIndex
  while i < hex.endIndex {
    let j = hex.index(i, offsetBy: 2)
    b.append(UInt8(hex[i..<j], radix: 16) ?? 0)
    i = j
  }
  return [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + b[8..<16]
}

/// One 16-byte MBR (or EBR) entry.
struct MBREntrySpec {
  var status: UInt8 = 0       // 0x80 active, 0x00 inactive
  var type: UInt8             // partition type byte
  var firstLBA: UInt32        // first sector (relative to the EBR for logical entries)
  var sectors: UInt32         // sector count
}

/// Builds a 512-byte MBR/EBR sector.
struct MBRBuilder {
  var signature: UInt32 = 0x1234_5678       // 440: disk signature
  var entries: [MBREntrySpec] = []          // 446: up to four entries
  var bootSignature = true                  // 510: 55 AA

  func build() -> [UInt8] {
    var s = [UInt8](repeating: 0, count: 512)
    s.le32(signature, at: 440)
    for (i, e) in entries.prefix(4).enumerated() {
      let at = 446 + 16 * i
      s[at] = e.status
      s[at + 4] = e.type
      s.le32(e.firstLBA, at: at + 8)
      s.le32(e.sectors, at: at + 12)
    }
    if bootSignature { s[510] = 0x55; s[511] = 0xAA }
    return s
  }
}

struct GPTPartitionSpec {
  var type = "0fc63daf-8483-4772-8e79-3d69d8477de4"    // PartitionTypeGUID
  var guid = "aaaaaaaa-0000-0000-0000-000000000001"    // UniquePartitionGUID
  var first: UInt64                                    // StartingLBA
  var last: UInt64                                     // EndingLBA (inclusive)
  var attributes: UInt64 = 0                           // Attributes
  var name = "part"                                    // PartitionName (UTF-16LE)
}

/// Builds a GPT disk: protective MBR, primary header and array, backup array and header.
struct GPTBuilder {
  var sectorSize = 512
  var diskSectors = 2048                               // disk length in sectors
  var mbr: MBRBuilder? = nil                           // nil: a protective MBR over the disk
  var revision: UInt32 = 0x0001_0000                   // 8: Revision
  var headerSize: UInt32 = 92                          // 12: HeaderSize
  var breakHeaderCRC = false                           // 16: HeaderCRC32 off by one
  var myLBA: UInt64 = 1                                // 24: MyLBA
  var alternateLBA: UInt64?                            // 32: AlternateLBA (nil: last LBA)
  var firstUsable: UInt64 = 34                         // 40: FirstUsableLBA
  var lastUsable: UInt64?                              // 48: LastUsableLBA (nil: last - 33)
  var diskGUID = "11111111-2222-3333-4444-555555555555"  // 56: DiskGUID
  var entriesLBA: UInt64 = 2                           // 72: PartitionEntryLBA
  var entryCount: UInt32 = 128                         // 80: NumberOfPartitionEntries
  var entrySize: UInt32 = 128                          // 84: SizeOfPartitionEntry
  var breakEntriesCRC = false                          // 88: PartitionEntryArrayCRC32 off by one
  var partitions: [GPTPartitionSpec] = []
  var backup = true                                    // write the backup header and array
  var backupDiskGUID: String?                          // a different DiskGUID in the backup
  var breakBackupCRC = false
  var breakBackupEntries = false                       // flip a byte in the backup array

  var lastLBA: UInt64 { UInt64(diskSectors - 1) }

  func header(my: UInt64, alternate: UInt64, entries: UInt64, arrayCRC: UInt32, guid: String, breakCRC: Bool) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: sectorSize)
    h.put(Array("EFI PART".utf8), at: 0)
    h.le32(revision, at: 8)
    h.le32(headerSize, at: 12)
    h.le64(my, at: 24)
    h.le64(alternate, at: 32)
    h.le64(firstUsable, at: 40)
    h.le64(lastUsable ?? lastLBA - 33, at: 48)
    h.put(guidBytes(guid), at: 56)
    h.le64(entries, at: 72)
    h.le32(entryCount, at: 80)
    h.le32(entrySize, at: 84)
    h.le32(arrayCRC, at: 88)
    let n = Int(min(UInt64(headerSize), UInt64(sectorSize)))
    var crc = CRC32.checksum(h[0..<max(n, 0)])
    if breakCRC { crc &+= 1 }
    h.le32(crc, at: 16)
    return h
  }

  func entryArray() -> [UInt8] {
    let size = Int(min(UInt64(entryCount) * UInt64(entrySize), 1 << 20))
    var a = [UInt8](repeating: 0, count: size)
    for (i, p) in partitions.enumerated() {
      let at = i * Int(entrySize)
      guard at + 128 <= a.count else { break }
      a.put(guidBytes(p.type), at: at)
      a.put(guidBytes(p.guid), at: at + 16)
      a.le64(p.first, at: at + 32)
      a.le64(p.last, at: at + 40)
      a.le64(p.attributes, at: at + 48)
      for (j, u) in p.name.utf16.prefix(36).enumerated() { a.le16(u, at: at + 56 + 2 * j) }
    }
    return a
  }

  func build() -> [UInt8] {
    let ss = sectorSize
    var img = [UInt8](repeating: 0, count: diskSectors * ss)
    let protective = MBRBuilder(entries: [MBREntrySpec(type: 0xEE, firstLBA: 1, sectors: UInt32(min(lastLBA, 0xFFFF_FFFF)))])
    img.put((mbr ?? protective).build(), at: 0)
    let array = entryArray()
    var crc = CRC32.checksum(array)
    if breakEntriesCRC { crc &+= 1 }
    if entriesLBA < UInt64(diskSectors) { img.put(array, at: Int(entriesLBA) * ss) }
    img.put(header(my: myLBA, alternate: alternateLBA ?? lastLBA, entries: entriesLBA, arrayCRC: crc, guid: diskGUID,
                   breakCRC: breakHeaderCRC), at: ss)
    if backup {
      let arraySectors = (array.count + ss - 1) / ss
      let backupEntries = max(Int(lastLBA) - arraySectors, 2)
      var copy = array
      if breakBackupEntries, !copy.isEmpty { copy[0] ^= 0xFF }
      img.put(copy, at: backupEntries * ss)
      img.put(header(my: lastLBA, alternate: 1, entries: UInt64(backupEntries), arrayCRC: crc,
                     guid: backupDiskGUID ?? diskGUID, breakCRC: breakBackupCRC), at: Int(lastLBA) * ss)
    }
    return img
  }
}

func probeTable(_ bytes: [UInt8]) throws -> ImageInfo? {
  try PartitionTableProbe.probe(try ProbeContext(source: MemorySource(bytes)))
}

final class PartitionTableTests: XCTestCase {
  let linux = "0fc63daf-8483-4772-8e79-3d69d8477de4"
  let esp = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"

  func twoPartitions() -> GPTBuilder {
    var b = GPTBuilder()
    b.partitions = [GPTPartitionSpec(type: esp, first: 100, last: 499, name: "EFI system"),
                    GPTPartitionSpec(guid: "aaaaaaaa-0000-0000-0000-000000000002", first: 500, last: 1999, attributes: 1 << 63, name: "root")]
    return b
  }

  // MARK: GPT

  func testValidGPT() throws {
    let info = try XCTUnwrap(try probeTable(twoPartitions().build()))
    XCTAssertEqual(info.findings, [])
    let t = try XCTUnwrap(info.partitionTable)
    XCTAssertEqual(t["type"], .string("gpt"))
    XCTAssertEqual(t["disk-guid"], .string("11111111-2222-3333-4444-555555555555"))
    XCTAssertEqual(t.at("mbr.kind"), .string("protective"))
    XCTAssertEqual(t.at("header.backup"), .string("ok"))
    XCTAssertEqual(t.at("partitions.0.type-name"), .string("EFI System"))
    XCTAssertEqual(t.at("partitions.0.name"), .string("EFI system"))
    XCTAssertEqual(t.at("partitions.1.first-lba"), .uint(500))
    XCTAssertEqual(t.at("partitions.1.attribute-flags.0"), .string("no-automount"))
  }

  func testEncryptedPartition() throws {
    var img = twoPartitions().build()
    // LUKS2 header at partition 2's start (LBA 500): magic, version 2, uuid.
    img.put([0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE, 0x00, 0x02], at: 500 * 512)
    img.put(Array("0b3e7d5a-6c1f-4a8e-9b2d-3f4e5a6b7c8d".utf8), at: 500 * 512 + 168)
    let t = try XCTUnwrap(try probeTable(img)?.partitionTable)
    XCTAssertEqual(t.at("partitions.1.filesystem.type"), .string("luks"))
    XCTAssertEqual(t.at("partitions.1.filesystem.version"), .int(2))
    XCTAssertEqual(t.at("partitions.1.filesystem.uuid"), .string("0b3e7d5a-6c1f-4a8e-9b2d-3f4e5a6b7c8d"))
    // At offset 0 a LUKS header is the LUKS probe's image format, not a filesystem.
    XCTAssertNil(try probeFS(Array(img[(500 * 512)...])))
  }

  func testGPT4KSectors() throws {
    var b = twoPartitions()
    b.sectorSize = 4096
    b.firstUsable = 6
    b.partitions = [GPTPartitionSpec(first: 256, last: 1279)]
    let info = try XCTUnwrap(try probeTable(b.build()))
    XCTAssertEqual(info.findings, [])
    XCTAssertEqual(info.partitionTable?["sector-size"], .uint(4096))
    XCTAssertEqual(info.partitionTable?.at("partitions.0.first-lba"), .uint(256))
  }

  func finding(_ b: GPTBuilder) throws -> [String] { ids(try probeTable(b.build())) }

  func testGPTForTwoSectorSizes() throws {
    var img = twoPartitions().build()
    var b4 = GPTBuilder()
    b4.sectorSize = 4096
    b4.diskSectors = 256
    b4.firstUsable = 6
    b4.partitions = [GPTPartitionSpec(first: 6, last: 100)]
    let g4 = b4.build()
    img.put(Array(g4[4096..<8192]), at: 4096)
    XCTAssertTrue(ids(try probeTable(img)).contains("partition.gpt-multiple-sector-sizes"))
  }

  func testHeaderChecksum() throws {
    var b = twoPartitions()
    b.breakHeaderCRC = true
    XCTAssertEqual(try finding(b), ["partition.gpt-header-checksum"])
  }

  func testHeaderSize() throws {
    var b = twoPartitions()
    b.headerSize = 40
    XCTAssertTrue(try finding(b).contains("partition.gpt-header-invalid"))
    b.headerSize = 100_000
    XCTAssertTrue(try finding(b).contains("partition.gpt-header-invalid"))
  }

  func testMyLBA() throws {
    var b = twoPartitions()
    b.myLBA = 7
    XCTAssertTrue(try finding(b).contains("partition.gpt-header-invalid"))
  }

  func testUsableRange() throws {
    var b = twoPartitions()
    b.lastUsable = 1_000_000
    XCTAssertTrue(try finding(b).contains("partition.gpt-usable-range"))
  }

  func testEntriesChecksum() throws {
    var b = twoPartitions()
    b.breakEntriesCRC = true
    // Both headers carry the same wrong CRC, so both copies of the array fail it.
    XCTAssertEqual(try finding(b), ["partition.gpt-entries-checksum", "partition.gpt-backup-entries-checksum"])
  }

  func testEntrySizeAndCount() throws {
    var b = twoPartitions()
    b.entrySize = 100
    XCTAssertTrue(try finding(b).contains("partition.gpt-entries-invalid"))
    b.entrySize = 1 << 20
    XCTAssertTrue(try finding(b).contains("partition.gpt-entries-invalid"))
    b.entrySize = 128
    b.entryCount = 0xFFFF_FFFF
    XCTAssertTrue(try finding(b).contains("partition.gpt-entries-invalid"))
  }

  func testEntriesBeyondEnd() throws {
    var b = twoPartitions()
    b.entriesLBA = 1 << 60
    XCTAssertTrue(try finding(b).contains("partition.gpt-entries-beyond-end"))
    b.entriesLBA = 0xFFFF_FFFF_FFFF_FFF0
    XCTAssertTrue(try finding(b).contains("partition.gpt-entries-beyond-end"))
  }

  func testEntriesOverlapUsableArea() throws {
    var b = twoPartitions()
    b.entriesLBA = 40
    XCTAssertTrue(try finding(b).contains("partition.gpt-entries-overlap"))
  }

  func testBackupMissing() throws {
    var b = twoPartitions()
    b.backup = false
    let info = try probeTable(b.build())
    XCTAssertEqual(ids(info), ["partition.gpt-backup-missing"])
    XCTAssertEqual(info?.findings.first?.severity, .warning)
  }

  func testBackupChecksum() throws {
    var b = twoPartitions()
    b.breakBackupCRC = true
    XCTAssertEqual(try finding(b), ["partition.gpt-backup-checksum"])
  }

  func testBackupMismatch() throws {
    var b = twoPartitions()
    b.backupDiskGUID = "99999999-2222-3333-4444-555555555555"
    XCTAssertEqual(try finding(b), ["partition.gpt-backup-mismatch"])
  }

  func testBackupEntriesChecksum() throws {
    var b = twoPartitions()
    b.breakBackupEntries = true
    XCTAssertEqual(try finding(b), ["partition.gpt-backup-entries-checksum"])
  }

  func testBackupLocation() throws {
    // The disk grew after partitioning: the backup is no longer at the last LBA.
    var small = twoPartitions().build()
    small += [UInt8](repeating: 0, count: 512 * 64)
    XCTAssertEqual(ids(try probeTable(small)), ["partition.gpt-backup-location"])
  }

  func testGPTInsideFixedVHD() throws {
    // A fixed VHD is the guest disk plus a 512-byte footer: the backup header is the sector before it.
    var img = twoPartitions().build()
    var footer = [UInt8](repeating: 0, count: 512)
    footer.put(Array("conectix".utf8), at: 0)
    img += footer
    let info = try probeTable(img)
    XCTAssertEqual(ids(info), [])
    XCTAssertEqual(info?.partitionTable?.at("header.backup"), .string("ok"))
  }

  func testNoProtectiveMBR() throws {
    var b = twoPartitions()
    b.mbr = MBRBuilder(entries: [MBREntrySpec(type: 0x83, firstLBA: 100, sectors: 400)])
    XCTAssertEqual(try finding(b), ["partition.gpt-no-protective-mbr"])
    b.mbr = MBRBuilder(bootSignature: false)
    XCTAssertEqual(try finding(b), ["partition.gpt-no-protective-mbr"])
  }

  func testHybridMBR() throws {
    var b = twoPartitions()
    b.mbr = MBRBuilder(entries: [MBREntrySpec(type: 0xEE, firstLBA: 1, sectors: 99),
                                 MBREntrySpec(type: 0xEF, firstLBA: 100, sectors: 400)])
    let info = try probeTable(b.build())
    XCTAssertEqual(ids(info), ["partition.mbr-hybrid"])
    XCTAssertEqual(info?.findings.first?.severity, .info)
    XCTAssertEqual(info?.partitionTable?.at("mbr.kind"), .string("hybrid"))
    // A hybrid entry past the end of the disk.
    b.mbr = MBRBuilder(entries: [MBREntrySpec(type: 0xEE, firstLBA: 1, sectors: 99),
                                 MBREntrySpec(type: 0x83, firstLBA: 100, sectors: 100_000)])
    XCTAssertEqual(try finding(b), ["partition.mbr-hybrid", "partition.beyond-end", "partition.mbr-overlaps-gpt"])
  }

  func testHybridMBROverlappingGPT() throws {
    var b = twoPartitions()
    // An MBR partition from LBA 1 covers the primary header and entry array.
    b.mbr = MBRBuilder(entries: [MBREntrySpec(type: 0xEE, firstLBA: 1, sectors: 2047),
                                 MBREntrySpec(type: 0x83, firstLBA: 1, sectors: 499)])
    XCTAssertEqual(try finding(b), ["partition.mbr-hybrid", "partition.mbr-overlaps-gpt"])
    // Two MBR partitions overlapping each other.
    b.mbr = MBRBuilder(entries: [MBREntrySpec(type: 0xEE, firstLBA: 1, sectors: 99),
                                 MBREntrySpec(type: 0xEF, firstLBA: 100, sectors: 400),
                                 MBREntrySpec(type: 0x83, firstLBA: 400, sectors: 400)])
    XCTAssertEqual(try finding(b), ["partition.mbr-hybrid", "partition.overlap"])
  }

  func testGPTPartitionBeyondEndAndOutsideUsable() throws {
    var b = twoPartitions()
    b.partitions.append(GPTPartitionSpec(guid: "aaaaaaaa-0000-0000-0000-000000000003", first: 2000, last: 5000))
    XCTAssertEqual(Set(try finding(b)), ["partition.outside-usable", "partition.beyond-end"])
  }

  func testGPTOverlap() throws {
    var b = twoPartitions()
    b.partitions.append(GPTPartitionSpec(guid: "aaaaaaaa-0000-0000-0000-000000000003", first: 450, last: 460))
    XCTAssertEqual(try finding(b), ["partition.overlap"])
  }

  func testGPTInvalidRange() throws {
    var b = twoPartitions()
    b.partitions.append(GPTPartitionSpec(first: 1500, last: 1400))
    XCTAssertEqual(try finding(b), ["partition.invalid-range"])
    b.partitions = [GPTPartitionSpec(first: 0, last: UInt64.max)]
    XCTAssertEqual(Set(try finding(b)), ["partition.outside-usable", "partition.beyond-end"])
  }

  func testManyOverlapsAreCapped() throws {
    var b = GPTBuilder()
    b.partitions = (0..<100).map { GPTPartitionSpec(first: 100, last: 200 + UInt64($0)) }
    let f = try finding(b)
    XCTAssertEqual(f.count, PartitionTableProbe.Limits.maxFindingsPerKind + 1)
  }

  func testProtectiveMBRWithoutGPT() throws {
    let img = MBRBuilder(entries: [MBREntrySpec(type: 0xEE, firstLBA: 1, sectors: 2047)]).build()
      + [UInt8](repeating: 0, count: 2047 * 512)
    XCTAssertEqual(ids(try probeTable(img)), ["partition.gpt-header-missing"])
  }

  func testTruncatedGPT() throws {
    // The header sector itself cut short: a clear error, no trap.
    let img = Array(twoPartitions().build().prefix(512 + 60))
    XCTAssertThrowsError(try probeTable(img)) { error in
      XCTAssertEqual((error as? ImageError)?.kind, .truncated)
    }
    // Cut inside the entry array.
    let cut = Array(twoPartitions().build().prefix(512 * 10))
    XCTAssertTrue(ids(try probeTable(cut)).contains("partition.gpt-entries-beyond-end"))
  }

  // MARK: MBR

  func disk(_ mbr: MBRBuilder, sectors: Int = 20480) -> [UInt8] {
    var img = [UInt8](repeating: 0, count: sectors * 512)
    img.put(mbr.build(), at: 0)
    return img
  }

  func testMBRPrimaries() throws {
    let info = try XCTUnwrap(try probeTable(disk(MBRBuilder(entries: [
      MBREntrySpec(status: 0x80, type: 0x83, firstLBA: 2048, sectors: 2048),
      MBREntrySpec(type: 0x0C, firstLBA: 4096, sectors: 4096),
    ]))))
    XCTAssertEqual(info.findings, [])
    let t = try XCTUnwrap(info.partitionTable)
    XCTAssertEqual(t["type"], .string("mbr"))
    XCTAssertEqual(t["disk-signature"], .string("0x12345678"))
    XCTAssertEqual(t.at("partitions.0.bootable"), .bool(true))
    XCTAssertEqual(t.at("partitions.1.type-name"), .string("W95 FAT32 (LBA)"))
    XCTAssertEqual(t.at("partitions.1.size"), .uint(4096 * 512))
  }

  func testNotAnMBR() throws {
    // Status bytes other than 0x00/0x80: boot code, not a table.
    var img = disk(MBRBuilder(entries: [MBREntrySpec(status: 0x12, type: 0x83, firstLBA: 1, sectors: 1)]))
    XCTAssertNil(try probeTable(img))
    img = [UInt8](repeating: 0, count: 4096)
    XCTAssertNil(try probeTable(img))
    XCTAssertNil(try probeTable([]))
  }

  func testMBROverlapAndBeyondEnd() throws {
    XCTAssertEqual(ids(try probeTable(disk(MBRBuilder(entries: [
      MBREntrySpec(type: 0x83, firstLBA: 2048, sectors: 4096),
      MBREntrySpec(type: 0x83, firstLBA: 4096, sectors: 2048),
    ])))), ["partition.overlap"])
    XCTAssertEqual(ids(try probeTable(disk(MBRBuilder(entries: [
      MBREntrySpec(type: 0x83, firstLBA: 2048, sectors: 0xFFFF_FFFF),
    ])))), ["partition.beyond-end"])
  }

  /// A disk with an extended partition at `start` and EBRs written as given (sector -> EBR).
  func extended(start: UInt32 = 8192, sectors: UInt32 = 8192, ebrs: [Int: MBRBuilder]) -> [UInt8] {
    var img = disk(MBRBuilder(entries: [MBREntrySpec(type: 0x83, firstLBA: 2048, sectors: 2048),
                                        MBREntrySpec(type: 0x05, firstLBA: start, sectors: sectors)]))
    for (sector, ebr) in ebrs { img.put(ebr.build(), at: sector * 512) }
    return img
  }

  func ebr(logical: UInt32 = 2048, sectors: UInt32 = 1024, next: UInt32?) -> MBRBuilder {
    var e = [MBREntrySpec(type: 0x83, firstLBA: logical, sectors: sectors)]
    if let next { e.append(MBREntrySpec(type: 0x05, firstLBA: next, sectors: 2048)) }
    return MBRBuilder(signature: 0, entries: e)
  }

  func testLogicalPartitions() throws {
    let info = try XCTUnwrap(try probeTable(extended(ebrs: [8192: ebr(next: 4096), 12288: ebr(sectors: 2048, next: nil)])))
    XCTAssertEqual(info.findings, [])
    let t = try XCTUnwrap(info.partitionTable)
    XCTAssertEqual(t.at("partitions.2.number"), .int(5))
    XCTAssertEqual(t.at("partitions.2.first-lba"), .uint(10240))
    XCTAssertEqual(t.at("partitions.2.logical"), .bool(true))
    XCTAssertEqual(t.at("partitions.3.number"), .int(6))
    XCTAssertEqual(t.at("partitions.3.first-lba"), .uint(14336))
  }

  func testEBRLoop() throws {
    // The second EBR links back to the first.
    let img = extended(ebrs: [8192: ebr(next: 4096), 12288: ebr(next: 0)])
    XCTAssertEqual(ids(try probeTable(img)), ["partition.ebr-loop"])
    // An EBR linking to itself.
    XCTAssertEqual(ids(try probeTable(extended(ebrs: [8192: ebr(next: 0)]))), ["partition.ebr-loop"])
  }

  func testEBRLimit() throws {
    // 200 EBRs one sector apart, each only linking to the next (no logical partition of its own).
    var ebrs: [Int: MBRBuilder] = [:]
    for i in 0..<200 {
      ebrs[8192 + i] = MBRBuilder(signature: 0, entries: [MBREntrySpec(type: 0, firstLBA: 0, sectors: 0),
                                                          MBREntrySpec(type: 0x05, firstLBA: UInt32(i + 1), sectors: 1)])
    }
    XCTAssertEqual(ids(try probeTable(extended(ebrs: ebrs))), ["partition.ebr-limit"])
  }

  func testEBRBeyondEndAndSignature() throws {
    XCTAssertEqual(ids(try probeTable(extended(ebrs: [8192: ebr(next: 0x7FFF_0000)]))), ["partition.ebr-beyond-end"])
    XCTAssertEqual(ids(try probeTable(extended(ebrs: [8192: ebr(next: 4096)]))), ["partition.ebr-signature"])
    // The extended partition's first EBR beyond the disk.
    XCTAssertEqual(ids(try probeTable(extended(start: 0xFFFF_FF00, sectors: 16, ebrs: [:]))),
                   ["partition.ebr-beyond-end", "partition.beyond-end"])
  }

  func testStreamThatLostTheEBRChain() throws {
    // Only the first 4 KiB kept (a stream), the EBR at 4 MiB not: the primaries are still listed.
    let img = extended(ebrs: [8192: ebr(next: nil)])
    let info = try XCTUnwrap(try PartitionTableProbe.probe(
      try ProbeContext(source: MemorySource(Array(img.prefix(65536)), declaredSize: UInt64(img.count)))))
    XCTAssertEqual(ids(info), ["partition.needs-seekable"])
    XCTAssertEqual(info.partitionTable?.at("partitions.1.type"), .string("0x5"))
  }

  func testLogicalOutsideExtended() throws {
    XCTAssertEqual(ids(try probeTable(extended(ebrs: [8192: ebr(logical: 9000, next: nil)]))),
                   ["partition.logical-outside-extended"])
  }

  func testFATBootSectorIsNotAnMBR() throws {
    XCTAssertNil(try probeTable(FATBuilder().build()))
  }

  func testKernelBootSectorIsNotAnMBR() throws {
    // A bzImage ends its first sector in 55 AA too; "HdrS" at 0x202 marks the boot protocol header.
    var img = disk(MBRBuilder(entries: [MBREntrySpec(type: 0x83, firstLBA: 1, sectors: 100_000)]))
    img.put(Array("HdrS".utf8), at: 0x202)
    XCTAssertNil(try probeTable(img))
  }

  // MARK: hybrid ISO

  func testISOHybridLayoutIsInfo() throws {
    // isohybrid: GPT partition 1 is the whole ISO from LBA 0, partition 2 an EFI image inside it,
    // the MBR lists the ISO without a protective entry.
    var iso = ISOBuilder()
    iso.totalSectors = 512
    var img = iso.build()
    var g = GPTBuilder()
    g.diskSectors = 2048
    g.firstUsable = 64
    g.mbr = MBRBuilder(entries: [MBREntrySpec(status: 0x80, type: 0x00, firstLBA: 0, sectors: 2048)])
    g.partitions = [GPTPartitionSpec(type: "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7", first: 0, last: 2000),
                    GPTPartitionSpec(type: esp, first: 140, last: 300)]
    let gpt = g.build()
    img.put(Array(gpt[0..<(34 * 512)]), at: 0)
    img.put(Array(gpt[(2048 - 33) * 512..<2048 * 512]), at: (2048 - 33) * 512)
    let info = try XCTUnwrap(try probeTable(img))
    XCTAssertEqual(Set(ids(info)), ["partition.iso-hybrid-layout"])
    XCTAssertEqual(info.partitionTable?.at("partitions.0.filesystem.type"), .string("iso9660"))
    // The same table on a disk that is not an ISO is corrupt.
    var plain = [UInt8](repeating: 0, count: 2048 * 512)
    plain.put(Array(gpt[0..<(34 * 512)]), at: 0)
    plain.put(Array(gpt[(2048 - 33) * 512..<2048 * 512]), at: (2048 - 33) * 512)
    XCTAssertEqual(Set(ids(try probeTable(plain))), ["partition.gpt-no-protective-mbr", "partition.outside-usable", "partition.overlap",
                                                  "partition.mbr-overlaps-gpt"])
  }

  // MARK: Apple partition map

  /// Driver descriptor "ER" with the block size, then map entries "PM" (count, start, blocks, name, type).
  func apmDisk(blockSize: Int = 2048, blocks: Int = 512, entries: [(start: UInt32, count: UInt32, type: String)],
               declared: UInt32? = nil) -> [UInt8] {
    var img = [UInt8](repeating: 0, count: blocks * blockSize)
    func be16(_ v: UInt16, _ at: Int) { img.put([UInt8(v >> 8), UInt8(v & 0xff)], at: at) }
    func be32(_ v: UInt32, _ at: Int) { img.put([UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)], at: at) }
    img.put(Array("ER".utf8), at: 0)                 // sbSig
    be16(UInt16(blockSize), 2)                       // sbBlkSize
    for (i, e) in entries.enumerated() {
      let at = (i + 1) * blockSize
      img.put(Array("PM".utf8), at: at)              // pmSig
      be32(declared ?? UInt32(entries.count), at + 4)  // pmMapBlkCnt
      be32(e.start, at + 8)                          // pmPyPartStart
      be32(e.count, at + 12)                         // pmPartBlkCnt
      img.put(Array("part\(i + 1)".utf8), at: at + 16)  // pmPartName
      img.put(Array(e.type.utf8), at: at + 48)       // pmParType
    }
    return img
  }

  func testAppleMap() throws {
    let info = try XCTUnwrap(try probeTable(apmDisk(entries: [(1, 2, "Apple_partition_map"), (16, 400, "Apple_HFS")])))
    XCTAssertEqual(info.findings, [])
    XCTAssertEqual(info.partitionTable?["type"], .string("apm"))
    XCTAssertEqual(info.partitionTable?.at("partitions.1.type"), .string("Apple_HFS"))
    XCTAssertEqual(info.partitionTable?.at("partitions.1.start"), .uint(16 * 2048))
  }

  func testAppleMapFindings() throws {
    XCTAssertEqual(ids(try probeTable(apmDisk(entries: [(1, 2, "Apple_partition_map"), (16, 4000, "Apple_HFS")]))),
                   ["partition.beyond-end"])
    XCTAssertEqual(ids(try probeTable(apmDisk(entries: [(1, 2, "Apple_partition_map")], declared: 3))),
                   ["partition.apm-entry-signature"])
    XCTAssertEqual(Set(ids(try probeTable(apmDisk(entries: [(1, 2, "Apple_partition_map")], declared: 0xFFFF_FFFF)))),
                   ["partition.apm-limit", "partition.apm-entry-signature"])
  }

  func testCRC32() {
    XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
    XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
    XCTAssertEqual(CRC32.update(CRC32.checksum(Array("1234".utf8)), Array("56789".utf8)), 0xCBF4_3926)
  }
}
