import Foundation
import XCTest
@testable import FormatProbe

final class VMDKTests: XCTestCase {
  typealias P = VMDKFamily

  func desc(_ text: String) throws -> VMDKDescriptor {
    try VMDKDescriptor.parse(Array(text.utf8)[...], base: 0)
  }

  // MARK: descriptor parser

  func testDescriptorBasics() throws {
    let d = try desc("""
      # Disk DescriptorFile
      version=1
      encoding="UTF-8"
      CID=fffffffe
      parentCID=ffffffff
      isNativeSnapshot="no"
      createType="monolithicSparse"

      # Extent description
      RW 16777216 SPARSE "test1.vmdk"
      RDONLY 100 FLAT "x-flat.vmdk" 7
      NOACCESS 8 ZERO

      # The Disk Data Base
      #DDB
      ddb.adapterType = "ide"
      ddb.geometry.cylinders="16383"
      """)
    XCTAssertTrue(d.hasSignature)
    XCTAssertEqual(d.version, "1")
    XCTAssertEqual(d.encoding, "UTF-8")
    XCTAssertEqual(d.cid, 0xffff_fffe)
    XCTAssertEqual(d.parentCID, 0xffff_ffff)
    XCTAssertEqual(d.isNativeSnapshot, "no")
    XCTAssertEqual(d.createType, "monolithicSparse")
    XCTAssertEqual(d.extents.count, 3)
    XCTAssertEqual(d.extents[0].filename, "test1.vmdk")
    XCTAssertEqual(d.extents[1].access, "RDONLY")
    XCTAssertEqual(d.extents[1].offset, 7)
    XCTAssertEqual(d.extents[2].type, "ZERO")
    XCTAssertNil(d.extents[2].filename)
    XCTAssertEqual(d.ddb("adapterType"), "ide")
    XCTAssertEqual(d.ddb("geometry.cylinders"), "16383")
    XCTAssertTrue(d.unknownLines.isEmpty)
    XCTAssertEqual(d.extentBytes, (16777216 + 100 + 8) * 512)
  }

  func testDescriptorCRLFCommentsAndDevicePaths() throws {
    let text = "# Disk DescriptorFile\r\nversion=1\r\nCID=9235a3aa\r\nparentCID=ffffffff\r\ncreateType=\"fullDevice\"\r\n"
      + "#RW 1000000 FLAT \"D:\\programy\\os.img\" 0\r\nRW 1000000 FLAT \"\\\\.\\PhysicalDrive2\" 0\r\n"
      + "ddb.virtualHWVersion = \"4\"\r\nddb.adapterType=\"ide\"\r\n"
    let d = try desc(text)
    XCTAssertEqual(d.extents.count, 1, "the #RW line is a comment")
    XCTAssertEqual(d.extents[0].filename, "\\\\.\\PhysicalDrive2")
    XCTAssertEqual(d.extents[0].filename?.count, 18)
    XCTAssertEqual(d.createType, "fullDevice")
    XCTAssertEqual(d.ddb("virtualHWVersion"), "4")
    XCTAssertEqual(d.ddb("adapterType"), "ide")
    XCTAssertTrue(d.unknownLines.isEmpty)
  }

  func testDescriptorWindows1252AndUnknownLines() throws {
    var bytes = Array("version=1\nencoding=\"windows-1252\"\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"caf".utf8)
    bytes += [0xe9, 0x80]
    bytes += Array(".vmdk\" 0\nthis is not a descriptor line\nRW lots FLAT \"x\" 0\n".utf8)
    let d = try VMDKDescriptor.parse(bytes[...], base: 0)
    XCTAssertEqual(d.extents.first?.filename, "café€.vmdk")
    XCTAssertEqual(d.unknownLines.count, 2)
    XCTAssertTrue(d.hasNonASCII)
  }

  func testDescriptorStopsAtNULAndDetection() throws {
    var bytes = Array("# Disk DescriptorFile\nversion=1\ncreateType=\"x\"\n".utf8)
    bytes += [0, 0, 0x41]
    let d = try VMDKDescriptor.parse(bytes[...], base: 0)
    XCTAssertEqual(d.createType, "x")
    XCTAssertTrue(VMDKDescriptor.looksLikeDescriptor(Array("# comment\n\nversion=1\n".utf8)[...]))
    XCTAssertTrue(VMDKDescriptor.looksLikeDescriptor(Array("# Disk DescriptorFile".utf8)[...]))
    XCTAssertFalse(VMDKDescriptor.looksLikeDescriptor(Array("hello\nversion=1\n".utf8)[...]))
    XCTAssertFalse(VMDKDescriptor.looksLikeDescriptor([0, 0, 0, 0][...]))
  }

  func testPathConcerns() {
    XCTAssertTrue(VMDKProbe.pathConcerns("disk-flat.vmdk").isEmpty)
    XCTAssertTrue(VMDKProbe.pathConcerns("/etc/shadow").contains("an absolute path"))
    XCTAssertTrue(VMDKProbe.pathConcerns("../../etc/passwd").contains("climbs out with .."))
    XCTAssertTrue(VMDKProbe.pathConcerns("/dev/sda").contains("a device"))
    XCTAssertTrue(VMDKProbe.pathConcerns("\\\\.\\PhysicalDrive0").contains("a device"))
    XCTAssertTrue(VMDKProbe.pathConcerns("http://example.com/x.vmdk").contains("a URL"))
    XCTAssertTrue(VMDKProbe.pathConcerns("C:\\disks\\x.vmdk").contains("an absolute path"))
    XCTAssertTrue(VMDKProbe.pathConcerns("\\\\server\\share\\x.vmdk").contains("a network (UNC) path"))
    XCTAssertEqual(VMDKProbe.pathConcerns("sub/x.vmdk"), ["a path into another directory"])
  }

  /// The real descriptors and their documented answers.
  func testSharedSamples() throws {
    // `<repo>/../shared/samples`, beside the checkout.
    let repo = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let candidates = [repo.deletingLastPathComponent()]
      .map { $0.appendingPathComponent("shared/samples/vmdk-descriptors") }
    guard let dir = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
      throw XCTSkip("samples are not present")
    }
    struct Want { let file: String; let type: String; let size: UInt64; let extent: String; let hw: String; let adapter: String; let cyl: UInt64 }
    let wants = [
      Want(file: "test-vmdk-desc.vmdk", type: "vmfs", size: 6442450944, extent: "ESX4.0-rhel4u8-32b-flat.vmdk", hw: "7", adapter: "lsilogic", cyl: 783),
      Want(file: "libvmdk-descriptor_file.1", type: "monolithicSparse", size: 8589934592, extent: "test1.vmdk", hw: "9", adapter: "ide", cyl: 16383),
      Want(file: "sq8vps-system-disk.vmdk", type: "fullDevice", size: 512000000, extent: "\\\\.\\PhysicalDrive2", hw: "4", adapter: "ide", cyl: 992),
      Want(file: "FrogOS2-disk.vmdk", type: "fullDevice", size: 16777216, extent: "/dev/loop0", hw: "4", adapter: "ide", cyl: 32),
    ]
    for w in wants {
      let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(w.file)))
      let info = try XCTUnwrap(try P.info(VMDKProbe.self, bytes), w.file)
      XCTAssertEqual(info.subformat, w.type, w.file)
      XCTAssertEqual(info.virtualSize, w.size, w.file)
      XCTAssertEqual(info.externalReferences.map(\.name), [w.extent], w.file)
      XCTAssertEqual(info.externalReferences.first?.kind, "extent")
      XCTAssertEqual(info.formatSpecific.json.at("hw-version")?.string, w.hw, w.file)
      XCTAssertEqual(info.formatSpecific.json.at("adapter-type")?.string, w.adapter, w.file)
      XCTAssertEqual(info.formatSpecific.json.at("geometry.cylinders")?.uint, w.cyl, w.file)
      XCTAssertEqual(P.ids(info).filter { $0 != "vmdk.extent-path" }, [], w.file)
      XCTAssertTrue(P.ids(info).contains("vmdk.extent-path"))
    }
    let d = try VMDKDescriptor.parse([UInt8](try Data(contentsOf: dir.appendingPathComponent("test-vmdk-desc.vmdk")))[...], base: 0)
    XCTAssertEqual(d.cid, 0x4164f1a0)
    XCTAssertEqual(d.ddb("thinProvisioned"), "1")
    XCTAssertEqual(d.ddb("longContentID"), "7a8d277e9e4ec89451404a324164f1a0")
    XCTAssertNil(d.extents[0].offset)
  }

  // MARK: descriptor files

  func testDescriptorFileHostileExtents() throws {
    let text = """
      # Disk DescriptorFile
      version=1
      CID=1
      parentCID=ffffffff
      createType="monolithicFlat"
      parentFileNameHint="../../base.vmdk"
      RW 2048 FLAT "/etc/shadow" 0
      RW 2048 FLAT "../../secret" 0
      RW 2048 FLAT "nfs://host/export/disk" 0
      RW 2048 FLAT "\\\\.\\PhysicalDrive0" 0
      bogus line here
      """
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, Array(text.utf8)))
    XCTAssertEqual(info.virtualSize, 4 * 2048 * 512)
    XCTAssertEqual(info.externalReferences.map(\.kind), ["parent-hint", "extent", "extent", "extent", "extent"])
    XCTAssertEqual(info.backingFilename, "../../base.vmdk")
    let ids = P.ids(info)
    XCTAssertEqual(ids.filter { $0 == "vmdk.extent-path" }.count, 4)
    XCTAssertTrue(ids.contains("vmdk.parent-hint"))
    XCTAssertTrue(ids.contains("vmdk.descriptor-line"))
    XCTAssertTrue(ids.contains("vmdk.multiple-extents"))
    XCTAssertTrue(info.findings.allSatisfy { $0.severity == .unsafe })
  }

  /// qemu finds keys with strstr (even in comments), reads CID from the first "CID" (which
  /// "parentCID" contains), expects `="` right after the key and opens only exact "RW" extents.
  func testReadersDisagree() throws {
    func ids(_ text: String) throws -> [String] { P.ids(try P.info(VMDKProbe.self, Array(text.utf8))) }
    let base = "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n"
    let flat = "RW 8 FLAT \"a\" 0\n"
    XCTAssertFalse(try ids(base + "createType=\"monolithicFlat\"\n" + flat).contains("vmdk.descriptor-ambiguous"))
    XCTAssertTrue(try ids(base + "createType = \"monolithicFlat\"\n" + flat).contains("vmdk.descriptor-ambiguous"))
    XCTAssertTrue(try ids(base + "# createType=\"streamOptimized\"\ncreateType=\"monolithicFlat\"\n" + flat)
      .contains("vmdk.descriptor-ambiguous"))
    XCTAssertTrue(try ids("version=1\nparentCID=ffffffff\nCID=1\ncreateType=\"monolithicFlat\"\n" + flat)
      .contains("vmdk.descriptor-ambiguous"))
    XCTAssertTrue(try ids(base + "createType=\"monolithicFlat\"\ncreateType=\"vmfs\"\n" + flat).contains("vmdk.descriptor-ambiguous"))
    XCTAssertTrue(try ids(base + "createType=\"monolithicFlat\"\n" + flat + "RDONLY 8 FLAT \"b\" 0\n").contains("vmdk.descriptor-ambiguous"))
    XCTAssertTrue(try ids(base + "createType=\"monolithicFlat\"\nrw 8 flat \"b\" 0\n").contains("vmdk.descriptor-ambiguous"))
    // A parent hint only qemu sees (in a comment) is still a file qemu would open.
    let hidden = try XCTUnwrap(try P.info(VMDKProbe.self, Array((base + "createType=\"monolithicFlat\"\n# parentFileNameHint=\"/etc/base.vmdk\"\n" + flat).utf8)))
    XCTAssertTrue(P.ids(hidden).contains("vmdk.descriptor-ambiguous"))
    XCTAssertTrue(hidden.externalReferences.contains(ExternalReference(kind: "parent-hint", name: "/etc/base.vmdk")))
    // In a sparse file's embedded descriptor too.
    var b = SparseBuilder()
    b.extraDescriptorLines = ["#parentFileNameHint=\"x.vmdk\""]
    XCTAssertTrue(P.ids(try P.info(VMDKProbe.self, b.image())).contains("vmdk.descriptor-ambiguous"))
  }

  func testDescriptorFileTooLargeAndTrailingBytes() throws {
    var big = Array("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"a\" 0\n".utf8)
    big += [UInt8](repeating: 0x0a, count: VMDKProbe.Limits.maxDescriptorBytes + 10 - big.count)
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, big))
    XCTAssertTrue(P.ids(info).contains("vmdk.descriptor-too-large"))
    var trailing = Array("version=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"a\" 0\n".utf8)
    trailing += [0, 0x4b, 0x44]
    XCTAssertTrue(P.ids(try P.info(VMDKProbe.self, trailing)).contains("vmdk.descriptor-line"))
  }

  func testDescriptorFileWithoutCreateTypeOrExtents() throws {
    let info = try P.info(VMDKProbe.self, Array("version=1\nCID=1\n".utf8))
    XCTAssertTrue(P.ids(info).contains("vmdk.create-type"))
    XCTAssertTrue(P.ids(info).contains("vmdk.no-extents"))
  }

  func testNotVMDK() throws {
    XCTAssertNil(try P.info(VMDKProbe.self, [UInt8](repeating: 0, count: 4096)))
    XCTAssertNil(try P.info(VMDKProbe.self, Array("KDM".utf8)))
  }

  // MARK: sparse header

  func testValidMonolithicSparse() throws {
    let b = SparseBuilder()
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, b.image()))
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(info.clusterSize, 65536)
    XCTAssertEqual(info.subformat, "monolithicSparse")
    XCTAssertEqual(info.dirty, false)
    XCTAssertEqual(info.findings, [])
    XCTAssertEqual(info.externalReferences, [])
    let fs = info.formatSpecific.json
    XCTAssertEqual(fs.at("cid")?.uint, 0x12345678)
    XCTAssertEqual(fs.at("create-type")?.string, "monolithicSparse")
    XCTAssertEqual(fs.at("extents.0.cluster-size")?.uint, 65536)
    XCTAssertEqual(fs.at("extents.0.format")?.string, "")
    XCTAssertEqual(fs.at("gd-entries")?.uint, 1)
  }

  func testTruncatedHeader() {
    let h = Array(SparseBuilder().header().prefix(100))
    let e = P.error(VMDKProbe.self, h)
    XCTAssertEqual(e?.kind, .truncated)
    XCTAssertTrue(e?.description.hasPrefix("vmdk: header") ?? false, e?.description ?? "")
  }

  func testBadVersion() {
    var b = SparseBuilder()
    b.version = 4
    XCTAssertEqual(P.error(VMDKProbe.self, b.image())?.finding, "vmdk.version")
  }

  func testGrainSizeNotPowerOfTwo() {
    var b = SparseBuilder()
    b.grainSize = 100
    let e = P.error(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 4096))
    XCTAssertEqual(e?.finding, "vmdk.grain-size")
    XCTAssertEqual(e?.offset, 20)
    b.grainSize = 1 << 30
    XCTAssertEqual(P.error(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 4096))?.finding, "vmdk.grain-size")
  }

  func testAbsurdGDAndGT() {
    var b = SparseBuilder()
    b.numGTEsPerGT = 4096
    XCTAssertEqual(P.error(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 4096))?.finding, "vmdk.gt-size")
    b.numGTEsPerGT = 0
    XCTAssertEqual(P.error(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 4096))?.finding, "vmdk.gt-size")
    b = SparseBuilder()
    b.grainSize = 1
    b.numGTEsPerGT = 1
    b.capacity = 1 << 40
    XCTAssertEqual(P.error(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 4096))?.finding, "vmdk.gd-size")
    b.capacity = UInt64.max / 2
    XCTAssertNotNil(P.error(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 4096)))
  }

  func testDescriptorTooLargeAndMisplaced() throws {
    var b = SparseBuilder()
    b.descriptorSize = 4096  // 2 MiB
    b.overHead = 4224
    b.rgdOffset = 4097
    b.gdOffset = 4102
    let ids = P.ids(try P.info(VMDKProbe.self, b.image()))
    XCTAssertTrue(ids.contains("vmdk.descriptor-too-large"), "\(ids)")
    b = SparseBuilder()
    b.descriptorOffset = 2
    XCTAssertTrue(P.ids(try P.info(VMDKProbe.self, b.image())).contains("vmdk.descriptor-offset"))
    // Sector 1 holds a second descriptor with a parent hint: qemu reads its CID and parent there.
    var img = b.image()
    img.vkPut(Array("parentFileNameHint=\"/etc/base.vmdk\"\n".utf8), at: 512)
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, img))
    XCTAssertTrue(P.ids(info).contains("vmdk.descriptor-ambiguous"))
    XCTAssertEqual(info.externalReferences.map(\.name), ["/etc/base.vmdk"])
  }

  func testDescriptorOverrun() throws {
    var b = SparseBuilder()
    b.descriptorSize = 1
    // Exactly 512 bytes of text, then non-NUL bytes: qemu reads on, the declared region stops.
    var text = "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\nRW 2048 SPARSE \"t.vmdk\"\n"
    text += String(repeating: "#", count: 511 - text.utf8.count) + "\n"
    b.descriptorText = text + "RW 2048 FLAT \"/etc/shadow\" 0\n"
    b.rgdOffset = 8
    b.gdOffset = 14
    var img = b.image()
    img.replaceSubrange(1024..<(1024 + 29), with: Array("RW 2048 FLAT \"/etc/shadow\" 0\n".utf8))
    let ids = P.ids(try P.info(VMDKProbe.self, img))
    XCTAssertTrue(ids.contains("vmdk.descriptor-overrun"), "\(ids)")
  }

  func testZeroDescriptorSize() {
    var b = SparseBuilder()
    b.descriptorSize = 0
    XCTAssertEqual(P.error(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 8192))?.finding, "vmdk.descriptor-size")
  }

  func testHeaderFlagsFindings() throws {
    var b = SparseBuilder()
    b.newline = [0x0a, 0x20, 0x0a, 0x0a]
    b.uncleanShutdown = 1
    b.flags |= 1 << 16
    b.compressAlgorithm = 7
    let info = try P.info(VMDKProbe.self, b.image())
    let ids = P.ids(info)
    XCTAssertTrue(ids.contains("vmdk.newline-corruption"))
    XCTAssertTrue(ids.contains("vmdk.unclean-shutdown"))
    XCTAssertTrue(ids.contains("vmdk.compress-algorithm"))
    XCTAssertEqual(info?.dirty, true)
  }

  func testEmbeddedDescriptorFindings() throws {
    var b = SparseBuilder()
    b.extentLines = ["RW 2048 SPARSE \"../x/test.vmdk\"", "RW 2048 FLAT \"/dev/sda\" 0"]
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, b.image()))
    let ids = P.ids(info)
    XCTAssertEqual(ids.filter { $0 == "vmdk.extent-path" }.count, 2, "\(ids)")
    XCTAssertTrue(ids.contains("vmdk.multiple-extents"))
    XCTAssertTrue(ids.contains("vmdk.capacity-mismatch"))
    XCTAssertEqual(info.externalReferences.map(\.name), ["/dev/sda"])
    XCTAssertEqual(info.virtualSize, 1 << 20, "the header's capacity wins, as in qemu")

    b = SparseBuilder()
    b.createType = "vmfs"
    b.extraDescriptorLines = ["parentFileNameHint=\"/vmfs/volumes/base.vmdk\"", "changeTrackPath=\"x-ctk.vmdk\"", "what is this"]
    let i2 = try XCTUnwrap(try P.info(VMDKProbe.self, b.image()))
    XCTAssertTrue(P.ids(i2).contains("vmdk.create-type"))
    XCTAssertTrue(P.ids(i2).contains("vmdk.parent-hint"))
    XCTAssertTrue(P.ids(i2).contains("vmdk.change-tracking"))
    XCTAssertTrue(P.ids(i2).contains("vmdk.descriptor-line"))
    XCTAssertEqual(i2.backingFilename, "/vmfs/volumes/base.vmdk")
    XCTAssertEqual(i2.backingFormat, "vmdk")

    b = SparseBuilder()
    b.extentLines = []
    XCTAssertTrue(P.ids(try P.info(VMDKProbe.self, b.image())).contains("vmdk.no-extents"))
  }

  func testNoDescriptor() throws {
    var b = SparseBuilder()
    b.descriptorText = ""
    let info = try P.info(VMDKProbe.self, b.image())
    XCTAssertEqual(info?.subformat, "sparseExtent")
    XCTAssertEqual(P.ids(info), ["vmdk.no-descriptor"])
    b.descriptorOffset = 0
    b.descriptorSize = 0
    b.rgdOffset = 21
    b.gdOffset = 26
    XCTAssertEqual(P.ids(try P.info(VMDKProbe.self, b.image())), ["vmdk.no-descriptor"])
  }

  // MARK: streamOptimized footer

  func testStreamOptimizedFooterLikeVMware() throws {
    let b = SparseBuilder()
    let img = b.streamOptimized()
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, img))
    XCTAssertEqual(info.subformat, "streamOptimized")
    XCTAssertEqual(info.findings, [])
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(info.formatSpecific.json.at("footer"), .bool(true))
    XCTAssertEqual(info.formatSpecific.json.at("extents.0.compressed"), .bool(true))
    XCTAssertNotEqual(info.formatSpecific.json.at("gd-offset")?.uint, UInt64.max)
  }

  func testFooterInvalid() {
    let b = SparseBuilder()
    XCTAssertEqual(P.error(VMDKProbe.self, b.streamOptimized(footerMarkerType: 1))?.finding, "vmdk.footer-invalid")
    XCTAssertEqual(P.error(VMDKProbe.self, b.streamOptimized(eos: false))?.finding, "vmdk.footer-invalid")
    let again = b.streamOptimized(mutateFooter: { $0.vkPut64(UInt64.max, at: 56) })
    XCTAssertEqual(P.error(VMDKProbe.self, again)?.finding, "vmdk.footer-invalid")
    let short = Array(b.streamOptimized().prefix(1024))
    XCTAssertEqual(P.error(VMDKProbe.self, short)?.finding, "vmdk.footer-invalid")
  }

  func testFooterDisagreesWithHeader() throws {
    let b = SparseBuilder()
    let desc = b.streamOptimized(mutateFooter: { $0.vkPut64(2, at: 28) })
    XCTAssertTrue(P.ids(try P.info(VMDKProbe.self, desc)).contains("vmdk.footer-descriptor"))
    let cap = b.streamOptimized(mutateFooter: { $0.vkPut64(4096, at: 12) })
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, cap))
    XCTAssertTrue(P.ids(info).contains("vmdk.footer-mismatch"))
    XCTAssertEqual(info.virtualSize, 4096 * 512, "the footer takes precedence, as in qemu")
  }

  func testSeSparse() throws {
    var h = [UInt8](repeating: 0, count: 4096)
    h.vkPut64(0xcafe_babe, at: 0)          // magic
    h.vkPut64(0x2_0000_0001, at: 8)        // version
    h.vkPut64(2048, at: 16)                // capacity (sectors)
    h.vkPut64(8, at: 24)                   // grain_size (sectors)
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, h))
    XCTAssertEqual(info.subformat, "seSparse")
    XCTAssertEqual(info.virtualSize, 1 << 20)
    XCTAssertEqual(P.ids(info), ["vmdk.no-descriptor"])
    h.vkPut64(3, at: 8)
    XCTAssertNil(try P.info(VMDKProbe.self, h))
  }

  // MARK: COWD

  func testCOWD() throws {
    var h = [UInt8](repeating: 0, count: 2048)
    h.vkPut(Array("COWD".utf8), at: 0)
    h.vkPut32(1, at: 4)       // version
    h.vkPut32(3, at: 8)       // flags
    h.vkPut32(8192, at: 12)   // numSectors: 4 MiB
    h.vkPut32(1, at: 16)      // grainSize
    h.vkPut32(4, at: 20)      // gdOffset
    h.vkPut32(2, at: 24)      // numGDEntries
    h.vkPut32(8, at: 28)      // freeSector
    let info = try XCTUnwrap(try P.info(VMDKProbe.self, h))
    XCTAssertEqual(info.subformat, "vmfsSparse")
    XCTAssertEqual(info.virtualSize, 4 << 20)
    XCTAssertEqual(P.ids(info), ["vmdk.cowd"])
    h.vkPut32(1, at: 24)
    XCTAssertTrue(P.ids(try P.info(VMDKProbe.self, h)).contains("vmdk.gd-out-of-range"))
    h.vkPut32(3, at: 16)
    XCTAssertEqual(P.error(VMDKProbe.self, h)?.finding, "vmdk.grain-size")
  }

  func testNonASCIIDescriptorIsAnEncodingWarning() throws {
    // The builder's plain ASCII descriptor raises nothing.
    XCTAssertFalse(P.ids(try P.info(VMDKProbe.self, SparseBuilder().image())).contains("vmdk.descriptor-encoding"))
    // A UTF-8 extent file name: qemu reads it, an ASCII-only inspector refuses the image.
    var b = SparseBuilder()
    b.extentLines = ["RW 2048 SPARSE \"caf\u{e9}.vmdk\""]
    var info = try XCTUnwrap(try P.info(VMDKProbe.self, b.image()))
    var f = try XCTUnwrap(info.findings.first { $0.id == "vmdk.descriptor-encoding" }, "\(P.ids(info))")
    XCTAssertEqual(f.severity, .warning)
    XCTAssertEqual(f.field, "descriptor")
    // Non-ASCII in a DDB value only, with the encoding declared.
    b = SparseBuilder()
    b.extraDescriptorLines = ["encoding=\"UTF-8\"", "ddb.comment = \"\u{441}\u{435}\u{440}\u{432}\u{435}\u{440}\""]
    info = try XCTUnwrap(try P.info(VMDKProbe.self, b.image()))
    f = try XCTUnwrap(info.findings.first { $0.id == "vmdk.descriptor-encoding" }, "\(P.ids(info))")
    XCTAssertEqual(f.severity, .warning)
    XCTAssert(f.message.contains("UTF-8"), f.message)
  }
}

/// Deep checks: every valid qemu-img fixture is clean; hand-built corruptions are found.
final class VMDKCheckTests: XCTestCase {
  typealias P = VMDKFamily

  func check(_ bytes: [UInt8]) throws -> CheckReport {
    let ctx = try P.ctx(bytes)
    let info = try XCTUnwrap(try VMDKProbe.probe(ctx))
    return VMDKProbe.deepCheck(ctx, info)
  }

  func ids(_ r: CheckReport) -> [String] { r.findings.map(\.id) }

  func testFixturesAreClean() throws {
    var checked = 0
    for entry in try Fixtures.manifest("vmdk") {
      let path = try Fixtures.path("vmdk", entry.file)
      let source = try FileSource(path: path)
      let ctx = try ProbeContext(source: source)
      for probe in [VMDKProbe.self, VDIProbe.self, PloopProbe.self] as [any DeepCheckable.Type] {
        guard let info = try? probe.probe(ctx) else { continue }
        let r = probe.deepCheck(ctx, info)
        XCTAssertEqual(r.findings.map(\.message), [], entry.file)
        XCTAssertEqual(r.counts.json.at("corruptions")?.uint ?? 0, 0, entry.file)
        XCTAssertEqual(r.counts.json.at("check-errors")?.uint, 0, entry.file)
        XCTAssertEqual(r.counts.json.at("leaks")?.uint ?? 0, 0, entry.file)
        checked += 1
      }
    }
    XCTAssertGreaterThan(checked, 10)
  }

  // Builder layout (sectors): 0 header, 1-20 descriptor, 21 RGD, 22-25 RGT, 26 GD, 27-30 GT,
  // grain 0 at 128, grain 3 at 256.
  let gdAt = 26 * 512, gtAt = 27 * 512, rgtAt = 22 * 512

  func testBuilderImageIsClean() throws {
    let r = try check(SparseBuilder().image())
    XCTAssertEqual(ids(r), [])
    XCTAssertEqual(r.counts.json.at("allocated-clusters")?.uint, 2)
    XCTAssertEqual(r.counts.json.at("total-clusters")?.uint, 16)
    XCTAssertEqual(r.counts.json.at("rgd-mismatches")?.uint, 0)
  }

  func testDirectoriesOutOfRange() throws {
    var b = SparseBuilder()
    var img = b.image()
    img.vkPut64(100_000, at: 56)
    XCTAssertEqual(ids(try check(img)), ["vmdk.gd-out-of-range"])
    img = b.image()
    img.vkPut64(100_000, at: 48)
    XCTAssertEqual(ids(try check(img)), ["vmdk.gd-out-of-range"])
    b.gdOffset = 0
    b.rgdOffset = 0
    b.flags = 1
    XCTAssertTrue(P.ids(try P.info(VMDKProbe.self, b.header() + [UInt8](repeating: 0, count: 65536))).contains("vmdk.gd-out-of-range"))
  }

  func testGrainTableFindings() throws {
    var img = SparseBuilder().image()
    img.vkPut32(999_999, at: gdAt)
    XCTAssertEqual(ids(try check(img)), ["vmdk.gt-out-of-range"])
    img = SparseBuilder().image()
    img.vkPut32(1, at: gdAt)  // GT on top of the descriptor
    XCTAssert(ids(try check(img)).contains("vmdk.gt-overlap"))
    img = SparseBuilder().image()
    img.vkPut32(22, at: gdAt)  // GT shares the redundant GT's sectors
    XCTAssert(ids(try check(img)).contains("vmdk.gt-overlap"))
  }

  func testGrainFindings() throws {
    var img = SparseBuilder().image()
    img.vkPut32(999_999, at: gtAt + 4)
    img.vkPut32(999_999, at: rgtAt + 4)
    XCTAssertEqual(ids(try check(img)), ["vmdk.grain-out-of-range"])
    img = SparseBuilder().image()
    img.vkPut32(128, at: gtAt + 20 * 4)  // guest grain 20 is beyond the 16-grain capacity
    img.vkPut32(128, at: rgtAt + 20 * 4)
    XCTAssertEqual(ids(try check(img)), ["vmdk.grain-out-of-range"])
    img = SparseBuilder().image()
    img.vkPut32(128, at: gtAt + 4)  // guest grain 1 shares grain 0's sectors
    img.vkPut32(128, at: rgtAt + 4)
    let dup = try check(img)
    XCTAssertEqual(ids(dup), ["vmdk.grain-overlap"])
    XCTAssertEqual(dup.counts.json.at("corruptions")?.uint, 1)
    img = SparseBuilder().image()
    img.vkPut32(24, at: gtAt + 4)  // on top of the redundant grain table
    img.vkPut32(24, at: rgtAt + 4)
    XCTAssertEqual(ids(try check(img)), ["vmdk.grain-overlap"])
    img = SparseBuilder().image()
    img.vkPut32(130, at: gtAt + 8)
    img.vkPut32(130, at: rgtAt + 8)
    XCTAssertEqual(ids(try check(img)), ["vmdk.grain-unaligned"])
  }

  func testRedundantDirectoryMismatch() throws {
    var img = SparseBuilder().image()
    img.vkPut32(0, at: rgtAt + 3 * 4)
    let r = try check(img)
    XCTAssertEqual(ids(r), ["vmdk.rgd-mismatch"])
    XCTAssertEqual(r.counts.json.at("rgd-mismatches")?.uint, 1)
    img = SparseBuilder().image()
    img.vkPut32(0, at: 21 * 512)
    XCTAssertEqual(ids(try check(img)), ["vmdk.rgd-mismatch"])
  }

  func testLeakedGrain() throws {
    var img = SparseBuilder().image()
    img += [UInt8](repeating: 7, count: 128 * 512)  // a grain no table uses
    let r = try check(img)
    XCTAssertEqual(ids(r), [])
    XCTAssertEqual(r.counts.json.at("leaks")?.uint, 1)
  }

  func testZeroedGrainEntries() throws {
    var b = SparseBuilder()
    b.version = 2
    b.flags |= 1 << 2
    var img = b.image()
    img.vkPut32(1, at: gtAt + 5 * 4)
    img.vkPut32(1, at: rgtAt + 5 * 4)
    let r = try check(img)
    XCTAssertEqual(ids(r), [])
    XCTAssertEqual(r.counts.json.at("zero-clusters")?.uint, 1)
  }

  func testManyFindingsAreCapped() throws {
    var img = SparseBuilder().image()
    for e in 0..<16 { img.vkPut32(999_999, at: gtAt + e * 4); img.vkPut32(999_999, at: rgtAt + e * 4) }
    for e in 16..<40 { img.vkPut32(128, at: gtAt + e * 4); img.vkPut32(128, at: rgtAt + e * 4) }
    let r = try check(img)
    XCTAssertLessThanOrEqual(r.findings.count, 2 * (VMDKProbe.Limits.maxFindingsPerKind + 1))
    XCTAssertEqual(r.counts.json.at("corruptions")?.uint, 40)
  }

  // MARK: streamOptimized

  func testStreamLikeVMwareIsClean() throws {
    let r = try check(SparseBuilder().streamOptimized())
    XCTAssertEqual(ids(r), [])
    XCTAssertEqual(r.counts.json.at("stream-grains")?.uint, 2)
    XCTAssertEqual(r.counts.json.at("allocated-clusters")?.uint, 2)
  }

  func testGrainMarkerMismatch() throws {
    var img = SparseBuilder().streamOptimized()
    img.vkPut64(4096, at: SparseBuilder().streamGrainSectors[1] * 512)  // grain 3's marker claims another lba
    let got = ids(try check(img))
    XCTAssert(got.contains("vmdk.grain-marker"), "\(got)")
    XCTAssert(got.contains("vmdk.marker-invalid"), "\(got)")
  }

  func testMarkerInvalid() throws {
    let gtMarker = SparseBuilder().streamGTMarkerSector
    var img = SparseBuilder().streamOptimized()
    img.vkPut32(0x7fff_ffff, at: 128 * 512 + 8)  // absurd compressed size
    XCTAssert(ids(try check(img)).contains("vmdk.marker-invalid"))
    img = SparseBuilder().streamOptimized()
    // The GT marker after the two grains: unknown type.
    img.vkPut32(9, at: gtMarker * 512 + 12)
    XCTAssertEqual(ids(try check(img)), ["vmdk.marker-invalid"])
    img = SparseBuilder().streamOptimized()
    img.vkPut64(7, at: gtMarker * 512)  // GT marker with the wrong sector count
    XCTAssertEqual(ids(try check(img)), ["vmdk.marker-invalid"])
  }

  func testGrainInflate() throws {
    let b = SparseBuilder()
    var img = b.streamOptimized()
    img[b.streamGrainSectors[1] * 512 + 12 + 2 + 5 + 100] ^= 0xff  // adler-32 no longer matches
    let r = try check(img)
    XCTAssertEqual(ids(r), ["vmdk.grain-inflate"])
    XCTAssertEqual(r.counts.json.at("inflated-grains")?.uint, 2)
    img = b.streamOptimized()
    img[b.streamGrainSectors[0] * 512 + 12] = 0x00  // not a zlib header
    XCTAssertEqual(ids(try check(img)), ["vmdk.grain-inflate"])
  }

  func testStreamTrailingData() throws {
    // A qemu-style stream (GD given in the header), then an end-of-stream marker and junk.
    var img = SparseBuilder().streamOptimized()
    let gd = img.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: img.count - 1024 + 56, as: UInt64.self) }
    img.vkPut64(gd, at: 56)
    img += [UInt8](repeating: 0x55, count: 512)
    XCTAssertEqual(ids(try check(img)), ["vmdk.stream-trailing-data"])
  }

  // MARK: other layouts

  func testCOWDCheck() throws {
    var h = [UInt8](repeating: 0, count: 4 * 512 + 512 + 4096 * 4 + 512)
    h.vkPut(Array("COWD".utf8), at: 0)
    h.vkPut32(1, at: 4)        // version
    h.vkPut32(8192, at: 12)    // numSectors
    h.vkPut32(1, at: 16)       // grainSize: 1 sector
    h.vkPut32(4, at: 20)       // gdOffset
    h.vkPut32(2, at: 24)       // numGDEntries
    h.vkPut32(5, at: 4 * 512)  // GD[0] -> GT at sector 5
    h.vkPut32(0, at: 4 * 512 + 4)
    h.vkPut32(37, at: 5 * 512)  // guest sector 0 at sector 37
    var r = try check(h)
    XCTAssertEqual(ids(r), [])
    XCTAssertEqual(r.counts.json.at("allocated-clusters")?.uint, 1)
    h.vkPut32(1_000_000, at: 5 * 512 + 4)
    r = try check(h)
    XCTAssertEqual(ids(r), ["vmdk.grain-out-of-range"])
  }

  func testDescriptorFileHasNothingToWalk() throws {
    let r = try check(Array("version=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"a\" 0\n".utf8))
    XCTAssertEqual(ids(r), [])
    XCTAssertEqual(r.counts.json.at("check-errors")?.uint, 0)
  }

  func testBrokenHeaderInCheck() throws {
    var img = SparseBuilder().image()
    let ctx = try P.ctx(img)
    let info = try XCTUnwrap(try VMDKProbe.probe(ctx))
    img.vkPut32(9, at: 4)
    let r = VMDKProbe.deepCheck(try P.ctx(img), info)
    XCTAssertEqual(ids(r), ["vmdk.version"])
    XCTAssertEqual(r.counts.json.at("check-errors")?.uint, 1)
  }

  func testMoreGrainTablesThanTrackedIsACheckLimit() throws {
    // One grain table past CheckLimits.maxTrackedGTs: 1-sector grains, 512 per table, so the
    // capacity is (2^20 + 1) * 512 sectors (256 GiB) while the file holds only the header, the
    // descriptor and a zeroed (all unallocated) directory of 2^20 + 1 entries (4 MiB).
    var b = SparseBuilder()
    let tables = VMDKProbe.CheckLimits.maxTrackedGTs + 1
    b.flags = 0x1  // no redundant directory
    b.grainSize = 1
    b.capacity = UInt64(tables) * 512
    b.extentLines = ["RW \(b.capacity) SPARSE \"test.vmdk\""]
    b.rgdOffset = 0
    b.gdOffset = 21
    let gdSectors = (tables * 4 + 511) / 512
    b.overHead = 21 + UInt64(gdSectors)
    var img = b.header()
    img.vkPad(to: 512)
    img += Array(b.descriptor.utf8)
    img.vkPad(to: Int(b.overHead) * 512)
    let r = try check(img)
    let f = try XCTUnwrap(r.findings.first { $0.id == "vmdk.check-limit" }, "\(ids(r))")
    XCTAssertEqual(f.severity, .info)
    XCTAssertEqual(f.field, "grain directory")
    XCTAssertEqual(r.counts.json.at("corruptions")?.uint, 0)
    // One table fewer stays below the limit: no finding.
    b.capacity = UInt64(tables - 1) * 512
    b.extentLines = ["RW \(b.capacity) SPARSE \"test.vmdk\""]
    var below = b.header()
    below.vkPad(to: 512)
    below += Array(b.descriptor.utf8)
    below.vkPad(to: Int(b.overHead) * 512)
    XCTAssertFalse(ids(try check(below)).contains("vmdk.check-limit"))
  }

  func testGrainTooLargeToInflateIsACheckLimit() throws {
    // A stream whose grains (32 MiB) exceed CheckLimits.maxInflateGrain: the compressed grain
    // is counted, not inflated. Built with 64 KiB grains, then the grain size is raised in the
    // header and the footer (the capacity still needs one grain table).
    var b = SparseBuilder()
    b.grains = [0]
    let big: UInt64 = 65536
    XCTAssertGreaterThan(big * 512, VMDKProbe.CheckLimits.maxInflateGrain)
    var img = b.streamOptimized(mutateFooter: { $0.vkPut64(big, at: 20) })
    img.vkPut64(big, at: 20)
    let r = try check(img)
    let f = try XCTUnwrap(r.findings.first { $0.id == "vmdk.check-limit" }, "\(ids(r))")
    XCTAssertEqual(f.severity, .info)
    XCTAssertEqual(f.field, "grain data")
    XCTAssertEqual(r.counts.json.at("inflated-grains")?.uint, 0)
    // The same stream with 64 KiB grains is inflated and raises nothing.
    XCTAssertEqual(ids(try check(b.streamOptimized())), [])
  }
}

/// Seeded random mutations of valid images: every probe and deep check must return or throw an
/// ImageError, never trap (a trap is a denial of service).
final class VMDKFamilyMutationTests: XCTestCase {
  struct Rng { var s: UInt64; mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s } }

  func testMutationsNeverTrap() throws {
    let seeds: [[UInt8]] = [SparseBuilder().image(), SparseBuilder().streamOptimized(), VDIBuilder().image(),
                            PloopBuilder().image(),
                            Array("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"a\" 0\n".utf8)]
    var rng = Rng(s: 0x9e37_79b9_7f4a_7c15)
    let interesting: [UInt32] = [0, 1, 0xffff_ffff, 0x7fff_ffff, 0x8000_0000, 512, 0x200000, 0xffff_fffe]
    var runs = 0
    for seed in seeds {
      for _ in 0..<400 {
        var b = seed
        for _ in 0..<(1 + Int(rng.next() % 4)) {
          // Mutate mostly the header and first tables, sometimes anywhere.
          let span = rng.next() % 4 == 0 ? b.count : min(b.count, 0x600)
          let at = Int(rng.next() % UInt64(span))
          switch rng.next() % 3 {
          case 0: b[at] = UInt8(truncatingIfNeeded: rng.next())
          case 1 where at + 4 <= b.count: b.vkPut32(interesting[Int(rng.next() % UInt64(interesting.count))], at: at & ~3)
          default: if at + 8 <= b.count { b.vkPut64(rng.next(), at: at & ~7) }
          }
        }
        if rng.next() % 8 == 0 { b = Array(b.prefix(Int(rng.next() % UInt64(b.count + 1)))) }
        let ctx = try ProbeContext(source: MemorySource(b))
        for probe in [VMDKProbe.self, VDIProbe.self, PloopProbe.self] as [any DeepCheckable.Type] {
          // The check must survive headers the probe refused, too.
          let info = (try? probe.probe(ctx)) ?? ImageInfo(probe: probe.id, qemuFormat: "vmdk", diskFormat: .vmdk)
          _ = probe.deepCheck(ctx, info)
        }
        runs += 1
      }
    }
    XCTAssertEqual(runs, 2000)
  }
}
