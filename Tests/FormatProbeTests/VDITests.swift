import Foundation
import XCTest
@testable import FormatProbe

/// Builds a VDI 1.1 image, one field per property (offsets in VDIProbe's table).
struct VDIBuilder {
  var text = "<<< Oracle VM VirtualBox Disk Image >>>\n"  // pre-header text
  var signature: UInt32 = 0xbeda107f                  // 0x40
  var version: UInt32 = 0x00010001                    // 0x44: 1.1
  var headerSize: UInt32 = 0x190                      // 0x48
  var imageType: UInt32 = 1                           // 0x4c: dynamic
  var imageFlags: UInt32 = 0                          // 0x50
  var offsetBlocks: UInt32 = 0x200                    // 0x154
  var offsetData: UInt32 = 0x400                      // 0x158
  var sectorSize: UInt32 = 512                        // 0x168
  var blockSize: UInt32 = 4096                        // 0x178 (small, to keep images tiny)
  var blocksInHDD: UInt32 = 8                         // 0x180
  var blocksAllocated: UInt32? = nil                  // 0x184: nil = count of `map`
  var diskSize: UInt64? = nil                         // 0x170: nil = blocks * block size
  var uuidLink = [UInt8](repeating: 0, count: 16)     // 0x1a8: parent
  /// Block map: data block index per disk block (0xffffffff unallocated).
  var map: [UInt32] = [0, 0xffff_ffff, 1, 0xffff_fffe, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]

  func image() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: Int(offsetData))
    b.vkPut(Array(text.utf8), at: 0)
    b.vkPut32(signature, at: 0x40)
    b.vkPut32(version, at: 0x44)
    b.vkPut32(headerSize, at: 0x48)
    b.vkPut32(imageType, at: 0x4c)
    b.vkPut32(imageFlags, at: 0x50)
    b.vkPut32(offsetBlocks, at: 0x154)
    b.vkPut32(offsetData, at: 0x158)
    b.vkPut32(sectorSize, at: 0x168)
    b.vkPut64(diskSize ?? UInt64(blocksInHDD) * UInt64(blockSize), at: 0x170)
    b.vkPut32(blockSize, at: 0x178)
    b.vkPut32(blocksInHDD, at: 0x180)
    let allocated = map.filter { $0 < 0xffff_fffe }
    b.vkPut32(blocksAllocated ?? UInt32(allocated.count), at: 0x184)
    b.vkPut([UInt8](repeating: 0x11, count: 16), at: 0x188)
    b.vkPut(uuidLink, at: 0x1a8)
    b.vkPad(to: Int(offsetBlocks) + map.count * 4)
    for (i, e) in map.enumerated() { b.vkPut32(e, at: Int(offsetBlocks) + i * 4) }
    b.vkPad(to: Int(offsetData) + (Set(allocated).count) * Int(blockSize))
    return b
  }
}

final class VDITests: XCTestCase {
  typealias P = VMDKFamily

  func check(_ bytes: [UInt8]) throws -> CheckReport {
    let ctx = try P.ctx(bytes)
    let info = try XCTUnwrap(try VDIProbe.probe(ctx))
    return VDIProbe.deepCheck(ctx, info)
  }

  func testValidDynamic() throws {
    let b = VDIBuilder()
    let info = try XCTUnwrap(try P.info(VDIProbe.self, b.image()))
    XCTAssertEqual(info.qemuFormat, "vdi")
    XCTAssertEqual(info.diskFormat, .vdi)
    XCTAssertEqual(info.subformat, "dynamic")
    XCTAssertEqual(info.virtualSize, 8 * 4096)
    XCTAssertEqual(info.clusterSize, 4096)
    XCTAssertEqual(info.findings, [])
    XCTAssertEqual(info.formatSpecific.json.at("text")?.string, "<<< Oracle VM VirtualBox Disk Image >>>")
    XCTAssertEqual(info.formatSpecific.json.at("uuid")?.string, "11111111-1111-1111-1111-111111111111")
    let r = try check(b.image())
    XCTAssertEqual(r.findings, [])
    XCTAssertEqual(r.counts.json.at("allocated-clusters")?.uint, 2)
    XCTAssertEqual(r.counts.json.at("corruptions")?.uint, 0)
  }

  func testStaticAndOtherPreHeaders() throws {
    var b = VDIBuilder()
    b.imageType = 2
    b.text = "<<< Sun xVM VirtualBox Disk Image >>>\n"
    b.map = [0, 1, 2, 3, 4, 5, 6, 7]
    XCTAssertEqual(try P.info(VDIProbe.self, b.image())?.subformat, "static")
    XCTAssertEqual(try check(b.image()).findings, [])
    b.text = "<<< innotek VirtualBox Disk Image >>>\n"
    XCTAssertNotNil(try P.info(VDIProbe.self, b.image()))
  }

  func testNotVDIAndTruncated() throws {
    XCTAssertNil(try P.info(VDIProbe.self, [UInt8](repeating: 0, count: 1024)))
    let short = Array(VDIBuilder().image().prefix(0x100))
    XCTAssertEqual(P.error(VDIProbe.self, short)?.kind, .truncated)
  }

  func testHeaderErrors() {
    var b = VDIBuilder()
    b.version = 0x00010000
    XCTAssertEqual(P.error(VDIProbe.self, b.image())?.finding, "vdi.version")
    b = VDIBuilder()
    b.imageType = 9
    XCTAssertEqual(P.error(VDIProbe.self, b.image())?.finding, "vdi.image-type")
    b = VDIBuilder()
    b.blockSize = 3000
    XCTAssertEqual(P.error(VDIProbe.self, b.image())?.finding, "vdi.block-size")
    b = VDIBuilder()
    b.blocksInHDD = 0x4000_0000
    b.map = []
    XCTAssertEqual(P.error(VDIProbe.self, b.image())?.finding, "vdi.block-map-size")
    b = VDIBuilder()
    b.diskSize = 1 << 40
    XCTAssertEqual(P.error(VDIProbe.self, b.image())?.finding, "vdi.disk-size")
    b = VDIBuilder()
    b.blocksAllocated = 9
    XCTAssertEqual(P.error(VDIProbe.self, b.image())?.finding, "vdi.blocks-allocated")
  }

  func testDifferencing() throws {
    var b = VDIBuilder()
    b.imageType = 4
    b.uuidLink = [UInt8](repeating: 0x22, count: 16)
    let info = try XCTUnwrap(try P.info(VDIProbe.self, b.image()))
    XCTAssertEqual(info.subformat, "differencing")
    XCTAssertEqual(P.ids(info), ["vdi.differencing"])
    XCTAssertEqual(info.findings.first?.severity, .unsafe)
    XCTAssertEqual(info.formatSpecific.json.at("parent-uuid")?.string, "22222222-2222-2222-2222-222222222222")
  }

  func testLayoutFindings() throws {
    var b = VDIBuilder()
    b.offsetBlocks = 0x201
    XCTAssertTrue(P.ids(try P.info(VDIProbe.self, b.image())).contains("vdi.offset-alignment"))
    b = VDIBuilder()
    b.offsetData = 0x200
    b.offsetBlocks = 0x200
    XCTAssertTrue(P.ids(try P.info(VDIProbe.self, b.image())).contains("vdi.block-map-overlap"))
    b = VDIBuilder()
    b.sectorSize = 4096
    XCTAssertTrue(P.ids(try P.info(VDIProbe.self, b.image())).contains("vdi.sector-size"))
    var img = VDIBuilder().image()
    img.vkPut32(0x1000, at: 0x180)  // blocks in HDD: map runs past the end
    img.vkPut64(0x1000 * 4096, at: 0x170)
    let info = try XCTUnwrap(try P.info(VDIProbe.self, Array(img.prefix(0x400))))
    XCTAssertTrue(P.ids(info).contains("vdi.block-map-truncated"))
  }

  func testBlockMapCorruption() throws {
    var b = VDIBuilder()
    b.map = [0, 0, 1, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]
    let dup = try check(b.image())
    XCTAssertEqual(dup.findings.map(\.id), ["vdi.block-map-duplicate"])
    XCTAssertEqual(dup.counts.json.at("corruptions")?.uint, 1)
    // Index 99 is beyond the disk's 8 blocks: like qemu, it is not counted as allocated either.
    b.map = [0, 1, 99, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]
    XCTAssertEqual(try check(b.image()).findings.map(\.id), ["vdi.block-out-of-range", "vdi.blocks-allocated"])
    // Index 5 is a block of the disk but the file holds only 2 data blocks.
    b.map = [0, 1, 5, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]
    XCTAssertEqual(try check(b.image()).findings.map(\.id), ["vdi.block-out-of-range"])
    b = VDIBuilder()
    b.blocksAllocated = 5
    XCTAssertEqual(try check(b.image()).findings.map(\.id), ["vdi.blocks-allocated"])
  }

  func testLeakedBlock() throws {
    let r = try check(VDIBuilder().image() + [UInt8](repeating: 1, count: 4096))
    XCTAssertEqual(r.findings, [])
    XCTAssertEqual(r.counts.json.at("leaks")?.uint, 1)
  }

  func testHugeMapIsReadInPieces() throws {
    // 2 Mi blocks of 512 bytes: an 8 MiB map, read in 4 MiB pieces, all unallocated.
    var b = VDIBuilder()
    b.blockSize = 512
    b.blocksInHDD = 2 << 20
    b.map = [UInt32](repeating: 0xffff_ffff, count: 2 << 20)
    b.offsetData = UInt32(0x200 + (2 << 20) * 4)
    let r = try check(b.image())
    XCTAssertEqual(r.findings, [])
    XCTAssertEqual(r.counts.json.at("total-clusters")?.uint, 2 << 20)
  }

  func testFileLargerThanTheDuplicateBitmapIsACheckLimit() throws {
    // With 512-byte blocks the file holds more than Limits.maxTrackedBlocks data blocks once it
    // passes 128 GiB: a sparse file (the header and map written, the rest a hole) reaches that
    // at no cost. Exactly maxTrackedBlocks blocks are still all tracked; one more is not.
    var b = VDIBuilder()
    b.blockSize = 512
    let header = b.image()
    let path = FileManager.default.temporaryDirectory
      .appendingPathComponent("vdi-check-limit-\(getpid()).vdi").path
    defer { unlink(path) }
    XCTAssert(FileManager.default.createFile(atPath: path, contents: Data(header)))
    func checkFile(dataBlocks: UInt64) throws -> CheckReport {
      XCTAssertEqual(truncate(path, off_t(UInt64(b.offsetData) + dataBlocks * 512)), 0)
      let ctx = try ProbeContext(source: try FileSource(path: path))
      let info = try XCTUnwrap(try VDIProbe.probe(ctx))
      return VDIProbe.deepCheck(ctx, info)
    }
    let atLimit = try checkFile(dataBlocks: VDIProbe.Limits.maxTrackedBlocks)
    XCTAssertFalse(atLimit.findings.map(\.id).contains("vdi.check-limit"), "\(atLimit.findings.map(\.id))")
    let beyond = try checkFile(dataBlocks: VDIProbe.Limits.maxTrackedBlocks + 1)
    let f = try XCTUnwrap(beyond.findings.first { $0.id == "vdi.check-limit" }, "\(beyond.findings.map(\.id))")
    XCTAssertEqual(f.severity, .info)
    XCTAssertEqual(beyond.counts.json.at("corruptions")?.uint, 0)
  }
}
