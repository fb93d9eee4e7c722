import XCTest
@testable import FormatProbe

/// Builds a FAT boot sector (defaults: a 1.44 MB floppy as mkfs.fat writes it).
struct FATBuilder {
  var jump: [UInt8] = [0xEB, 0x3C, 0x90]   // 0: BS_jmpBoot
  var oem = "mkfs.fat"                      // 3: BS_OEMName
  var bytesPerSector: UInt16 = 512          // 11: BPB_BytsPerSec
  var sectorsPerCluster: UInt8 = 1          // 13: BPB_SecPerClus
  var reserved: UInt16 = 1                  // 14: BPB_RsvdSecCnt
  var fats: UInt8 = 2                       // 16: BPB_NumFATs
  var rootEntries: UInt16 = 224             // 17: BPB_RootEntCnt
  var totalSectors16: UInt16 = 2880         // 19: BPB_TotSec16
  var media: UInt8 = 0xF0                   // 21: BPB_Media
  var fatSize16: UInt16 = 9                 // 22: BPB_FATSz16
  var totalSectors32: UInt32 = 0            // 32: BPB_TotSec32
  var fatSize32: UInt32 = 0                 // 36: BPB_FATSz32 (FAT32 only)
  var serial: UInt32 = 0x1234_ABCD          // 39 (FAT12/16) or 67 (FAT32): BS_VolID
  var label = "FLOPPY"                      // 43 or 71: BS_VolLab
  var signature = true                      // 510: 55 AA
  var length = 1_474_560                    // bytes of the image

  func build() -> [UInt8] {
    var s = [UInt8](repeating: 0, count: length)
    s.put(jump, at: 0)
    s.put(Array(oem.utf8.prefix(8)), at: 3)
    s.le16(bytesPerSector, at: 11)
    s[13] = sectorsPerCluster
    s.le16(reserved, at: 14)
    s[16] = fats
    s.le16(rootEntries, at: 17)
    s.le16(totalSectors16, at: 19)
    s[21] = media
    s.le16(fatSize16, at: 22)
    s.le32(totalSectors32, at: 32)
    let ext: Int
    if fatSize16 == 0 {
      s.le32(fatSize32, at: 36)
      ext = 64
    } else {
      ext = 36
    }
    s[ext + 2] = 0x29
    s.le32(serial, at: ext + 3)
    s.put(Array((label + String(repeating: " ", count: 11)).utf8.prefix(11)), at: ext + 7)
    if signature { s[510] = 0x55; s[511] = 0xAA }
    return s
  }
}

func probeFS(_ bytes: [UInt8]) throws -> ImageInfo? {
  try FilesystemProbe.probe(try ProbeContext(source: MemorySource(bytes)))
}

final class FilesystemTests: XCTestCase {
  func testFATFloppy() throws {
    let info = try XCTUnwrap(try probeFS(FATBuilder().build()))
    let fs = try XCTUnwrap(info.filesystem)
    XCTAssertEqual(fs["type"], .string("fat12"))
    XCTAssertEqual(fs["label"], .string("FLOPPY"))
    XCTAssertEqual(fs["uuid"], .string("1234-ABCD"))
    XCTAssertEqual(fs["size"], .uint(1_474_560))
    XCTAssertEqual(info.findings, [])
  }

  func testFATTypeByClusterCount() throws {
    var b = FATBuilder()
    b.length = 16 << 20
    b.totalSectors16 = 0
    b.totalSectors32 = 32768
    b.sectorsPerCluster = 4
    b.fatSize16 = 32
    b.media = 0xF8
    XCTAssertEqual(try probeFS(b.build())?.filesystem?["type"], .string("fat16"))
    b.length = 40 << 20
    b.totalSectors32 = 81920
    b.sectorsPerCluster = 1
    b.fatSize16 = 0
    b.fatSize32 = 630
    b.rootEntries = 0
    b.reserved = 32
    XCTAssertEqual(try probeFS(b.build())?.filesystem?["type"], .string("fat32"))
  }

  func testFATFieldValidation() throws {
    // Every broken BPB field makes the sector "not FAT" rather than a wrong answer.
    var cases: [FATBuilder] = []
    var b = FATBuilder(); b.jump = [0, 0, 0]; cases.append(b)
    b = FATBuilder(); b.bytesPerSector = 500; cases.append(b)
    b = FATBuilder(); b.sectorsPerCluster = 3; cases.append(b)
    b = FATBuilder(); b.reserved = 0; cases.append(b)
    b = FATBuilder(); b.fats = 0; cases.append(b)
    b = FATBuilder(); b.media = 0x12; cases.append(b)
    b = FATBuilder(); b.fatSize16 = 0; cases.append(b)
    b = FATBuilder(); b.totalSectors16 = 5; cases.append(b)
    b = FATBuilder(); b.signature = false; cases.append(b)
    for (i, c) in cases.enumerated() { XCTAssertNil(try probeFS(c.build()), "case \(i)") }
  }

  func testFilesystemBeyondEnd() throws {
    var b = FATBuilder()
    b.length = 100_000
    let info = try XCTUnwrap(try probeFS(b.build()))
    XCTAssertEqual(ids(info), ["filesystem.beyond-end"])
  }

  func ext(incompat: UInt32 = 0, compat: UInt32 = 0, roCompat: UInt32 = 0, logBlockSize: UInt32 = 0, blocks: UInt32 = 4096) -> [UInt8] {
    var img = [UInt8](repeating: 0, count: 4 << 20)
    let sb = 1024
    img.le32(blocks, at: sb + 0x04)        // s_blocks_count_lo
    img.le32(logBlockSize, at: sb + 0x18)  // s_log_block_size
    img.le16(0xEF53, at: sb + 0x38)        // s_magic
    img.le16(1, at: sb + 0x3A)             // s_state: clean
    img.le32(compat, at: sb + 0x5C)        // s_feature_compat
    img.le32(incompat, at: sb + 0x60)      // s_feature_incompat
    img.le32(roCompat, at: sb + 0x64)      // s_feature_ro_compat
    img.put(Array("label".utf8), at: sb + 0x78)  // s_volume_name
    return img
  }

  func testExtGenerations() throws {
    XCTAssertEqual(try probeFS(ext())?.filesystem?["type"], .string("ext2"))
    XCTAssertEqual(try probeFS(ext(compat: 4))?.filesystem?["type"], .string("ext3"))
    XCTAssertEqual(try probeFS(ext(incompat: 0x40, compat: 4))?.filesystem?["type"], .string("ext4"))
    XCTAssertEqual(try probeFS(ext(incompat: 0x8))?.filesystem?["type"], .string("jbd"))
    XCTAssertEqual(try probeFS(ext())?.filesystem?["label"], .string("label"))
    // An impossible block size: two magic bytes are not enough to call it ext.
    XCTAssertNil(try probeFS(ext(logBlockSize: 40)))
    XCTAssertNil(try probeFS(ext(blocks: 0)))
    // Larger than the image.
    XCTAssertEqual(ids(try probeFS(ext(blocks: 1 << 30))), ["filesystem.beyond-end"])
  }

  func testXFSInvalidBlockSize() throws {
    var img = [UInt8](repeating: 0, count: 8192)
    img.put(Array("XFSB".utf8), at: 0)
    img.put([0, 0, 0x30, 0], at: 4)  // sb_blocksize 12288: not a power of two
    let info = try XCTUnwrap(try probeFS(img))
    XCTAssertEqual(info.filesystem?["type"], .string("xfs"))
    XCTAssertEqual(ids(info), ["filesystem.superblock-invalid"])
  }

  func testExFAT() throws {
    var img = [UInt8](repeating: 0, count: 1 << 20)
    img.put([0xEB, 0x76, 0x90], at: 0)
    img.put(Array("EXFAT   ".utf8), at: 3)
    img.le64(2048, at: 72)          // VolumeLength (sectors)
    img.le32(100, at: 92)           // ClusterCount
    img.le32(0xDEAD_BEEF, at: 100)  // VolumeSerialNumber
    img.le16(0x0100, at: 104)       // FileSystemRevision 1.0
    img[108] = 9                    // BytesPerSectorShift
    img[109] = 3                    // SectorsPerClusterShift
    img[510] = 0x55; img[511] = 0xAA
    let fs = try XCTUnwrap(try probeFS(img)?.filesystem)
    XCTAssertEqual(fs["type"], .string("exfat"))
    XCTAssertEqual(fs["uuid"], .string("DEAD-BEEF"))
    XCTAssertEqual(fs["cluster-size"], .uint(4096))
    XCTAssertEqual(fs["size"], .uint(1 << 20))
    // Shifts out of range are reported, not shifted.
    img[108] = 200
    XCTAssertEqual(ids(try probeFS(img)), ["filesystem.superblock-invalid"])
    // And an exFAT boot sector is not an MBR.
    XCTAssertNil(try probeTable(img))
  }

  func testLVM2Label() throws {
    var img = [UInt8](repeating: 0, count: 1 << 20)
    let label = 512  // sector 1, where pvcreate writes it
    img.put(Array("LABELONE".utf8), at: label)  // id
    img.le64(1, at: label + 8)                  // sector_xl
    img.le32(32, at: label + 20)                // offset_xl
    img.put(Array("LVM2 001".utf8), at: label + 24)  // type
    img.put(Array("abcdefghijklmnopqrstuvwxyz012345".utf8), at: label + 32)  // pv_uuid
    img.le64(1 << 20, at: label + 64)           // device_size_xl
    let fs = try XCTUnwrap(try probeFS(img)?.filesystem)
    XCTAssertEqual(fs["type"], .string("lvm2-pv"))
    XCTAssertEqual(fs["uuid"], .string("abcdef-ghij-klmn-opqr-stuv-wxyz-012345"))
    XCTAssertEqual(fs["size"], .uint(1 << 20))
    img.le32(4000, at: label + 20)
    XCTAssertEqual(ids(try probeFS(img)), ["filesystem.superblock-invalid"])
  }

  func testSwapOnLargePages() throws {
    var img = [UInt8](repeating: 0, count: 1 << 20)
    img.put(Array("SWAPSPACE2".utf8), at: 65536 - 10)
    img.le32(1, at: 1024)    // version
    img.le32(15, at: 1028)   // last_page
    let fs = try XCTUnwrap(try probeFS(img)?.filesystem)
    XCTAssertEqual(fs["type"], .string("swap"))
    XCTAssertEqual(fs["page-size"], .uint(65536))
  }

  func testNTFSInvalidSectorSize() throws {
    var img = [UInt8](repeating: 0, count: 8192)
    img.put([0xEB, 0x52, 0x90], at: 0)
    img.put(Array("NTFS    ".utf8), at: 3)
    img.le16(3, at: 11)
    XCTAssertEqual(ids(try probeFS(img)), ["filesystem.superblock-invalid"])
  }

  func testSquashfs() throws {
    var img = [UInt8](repeating: 0, count: 8192)
    img.put(Array("hsqs".utf8), at: 0)
    img.le32(131072, at: 12)  // block_size
    img.le16(4, at: 20)       // compression: xz
    img.le16(4, at: 28)       // s_major
    img.le64(4096, at: 40)    // bytes_used
    let fs = try XCTUnwrap(try probeFS(img)?.filesystem)
    XCTAssertEqual(fs["compression"], .string("xz"))
    XCTAssertEqual(fs["version"], .string("4.0"))
    img.le32(3, at: 12)
    XCTAssertEqual(ids(try probeFS(img)), ["filesystem.superblock-invalid"])
  }

  func testShortInputs() throws {
    for n in [0, 1, 3, 11, 512, 1100, 2048, 4096, 65600] {
      _ = try probeFS([UInt8](repeating: 0xEB, count: n))
      _ = try probeFS(Array(FATBuilder().build().prefix(n)))
      _ = try probeFS(Array(ext().prefix(n)))
    }
  }
}
