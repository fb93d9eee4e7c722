import XCTest
@testable import FormatProbe

/// Kernel headers (aki): each layout, and truncated or inconsistent headers.
final class KernelTests: XCTestCase {
  /// An x86 boot sector + setup header, one line per field (Documentation/arch/x86/boot.rst).
  struct X86 {
    var size = 32 << 10
    var setupSects: UInt8 = 4           // 0x1f1
    var bootFlag: UInt16 = 0xaa55       // 0x1fe
    var magic = Array("HdrS".utf8)      // 0x202
    var version: UInt16 = 0x020f        // 0x206
    var kernelVersion: UInt16 = 0x1000  // 0x20e: string at +0x200
    var loadflags: UInt8 = 1            // 0x211
    var versionText = "6.9.0-test"

    func bytes() -> [UInt8] {
      var b = [UInt8](repeating: 0, count: size)
      func put16(_ v: UInt16, _ at: Int) { if at + 1 < b.count { b[at] = UInt8(v & 0xff); b[at + 1] = UInt8(v >> 8) } }
      b[0] = 0x4d; b[1] = 0x5a
      b[0x1f1] = setupSects
      put16(bootFlag, 0x1fe)
      for (i, c) in magic.enumerated() { b[0x202 + i] = c }
      put16(version, 0x206)
      put16(kernelVersion, 0x20e)
      b[0x211] = loadflags
      let at = Int(kernelVersion) + 0x200
      if kernelVersion != 0 { for (i, c) in versionText.utf8.enumerated() where at + i < b.count { b[at + i] = c } }
      return b
    }
  }

  func probe(_ b: [UInt8]) throws -> ImageInfo? { try AKIProbe.probe(try ProbeContext(source: MemorySource(b))) }

  func testBzImage() throws {
    let info = try XCTUnwrap(try probe(X86().bytes()))
    XCTAssertEqual(info.diskFormat, .aki)
    XCTAssertEqual(info.containerFormat, .aki)
    XCTAssertEqual(info.subformat, "bzImage")
    XCTAssertEqual(info.formatSpecific.json.at("kernel-version")?.string, "6.9.0-test")
    XCTAssertEqual(info.formatSpecific.json.at("boot-protocol")?.string, "2.15")
    XCTAssertNil(info.virtualSize)
    XCTAssertEqual(try probe(X86(loadflags: 0).bytes())?.subformat, "zImage")
  }

  func testBootSectorAloneIsNotAKernel() throws {
    // An MBR disk: 55 AA at 510, no HdrS.
    XCTAssertNil(try probe(X86(magic: Array("xxxx".utf8)).bytes()))
    var mbr = [UInt8](repeating: 0, count: 4096)
    mbr[510] = 0x55; mbr[511] = 0xaa
    XCTAssertNil(try probe(mbr))
    let r = Inspector.inspect(MemorySource(mbr))
    XCTAssertNotEqual(r.info?.diskFormat, .aki)
  }

  func testTruncatedAndInconsistent() {
    // The version string pointer beyond the end of the file.
    XCTAssertThrowsError(try probe(X86(size: 0x1000, kernelVersion: 0x7000).bytes())) { e in
      XCTAssertEqual((e as? ImageError)?.kind, .truncated)
      XCTAssertEqual((e as? ImageError)?.field, "kernel_version")
    }
    // Boot protocol 1.x or 3.x.
    XCTAssertThrowsError(try probe(X86(version: 0x0105).bytes()))
    XCTAssertThrowsError(try probe(X86(version: 0x0300).bytes()))
    // More setup sectors than the file holds.
    XCTAssertThrowsError(try probe(X86(size: 0x1200, setupSects: 200, kernelVersion: 0).bytes())) { e in
      XCTAssertEqual((e as? ImageError)?.field, "setup_sects")
    }
    // Headers cut short: never a trap.
    for n in [0, 1, 0x1ff, 0x205, 0x210, 0x212] {
      let b = Array(X86().bytes().prefix(n))
      XCTAssertNoThrow(try? probe(b))
    }
    // A truncated result is malformed, not raw.
    let r = Inspector.inspect(MemorySource(X86(size: 0x1000, kernelVersion: 0x7000).bytes()))
    guard case .malformed = r.outcome else { return XCTFail("\(r.outcome)") }
  }

  func image(_ magic: [UInt8], riscv: Bool = false) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 4096)
    b[8] = 0; b[9] = 0; b[10] = 8           // text_offset 0x80000
    b[0x10 + 2] = 0x40                       // image_size 0x400000
    if riscv { b[0x2c] = 2; for (i, c) in "RISCV".utf8.enumerated() { b[0x30 + i] = c } }
    for (i, c) in magic.enumerated() { b[0x38 + i] = c }
    return b
  }

  func testArm64AndRiscv() throws {
    let a = try XCTUnwrap(try probe(image([0x41, 0x52, 0x4d, 0x64])))
    XCTAssertEqual(a.subformat, "arm64-image")
    XCTAssertEqual(a.formatSpecific.json.at("text-offset")?.uint, 0x80000)
    XCTAssertEqual(a.formatSpecific.json.at("image-size")?.uint, 0x400000)
    let r = try XCTUnwrap(try probe(image([0x52, 0x53, 0x43, 0x05], riscv: true)))
    XCTAssertEqual(r.subformat, "riscv-image")
    XCTAssertEqual(r.formatSpecific.json.at("header-version")?.string, "0.2")
    XCTAssertNil(try probe(Array(image([0x41, 0x52, 0x4d, 0x64]).prefix(0x3b))))
  }

  func testArmZImage() throws {
    var b = [UInt8](repeating: 0, count: 8192)
    func put32(_ v: UInt32, _ at: Int) { for i in 0..<4 { b[at + i] = UInt8((v >> (8 * UInt32(i))) & 0xff) } }
    put32(0x016f2818, 0x24)
    put32(0, 0x28)
    put32(8192, 0x2c)
    XCTAssertEqual(try probe(b)?.subformat, "arm-zImage")
    XCTAssertEqual(try probe(b)?.findings.map(\.id), [])
    put32(0x100000, 0x2c)
    XCTAssertEqual(try probe(b)?.findings.map(\.id), ["aki.truncated"])
    put32(0x10, 0x28)
    put32(0x8, 0x2c)
    XCTAssertThrowsError(try probe(b))
  }
}
