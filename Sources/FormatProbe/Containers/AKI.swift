/// Kernel images (the image service's `aki`): x86 bzImage/zImage, 32-bit ARM zImage, arm64 Image
/// and RISC-V Image. Detected by header magic only; nothing is decompressed or executed.
///
/// x86 boot protocol (Linux Documentation/arch/x86/boot.rst), real-mode header:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0x1f1 | 1 | setup_sects |
/// | 0x1f4 | 4 | syssize (16-byte paragraphs) |
/// | 0x1fe | 2 | boot_flag (0xAA55) |
/// | 0x202 | 4 | header ("HdrS") |
/// | 0x206 | 2 | version (boot protocol, major.minor) |
/// | 0x20e | 2 | kernel_version (pointer to a NUL-terminated string, minus 0x200) |
/// | 0x211 | 1 | loadflags (bit 0 LOADED_HIGH: bzImage) |
/// | 0x236 | 2 | xloadflags (2.12+) |
/// | 0x248 | 4 | payload_offset (2.08+) |
/// | 0x24c | 4 | payload_length (2.08+) |
/// | 0x260 | 4 | init_size (2.10+) |
///
/// ARM zImage (arch/arm/boot/compressed/head.S): magic 0x016F2818 LE at 0x24, start 0x28, end 0x2c.
/// arm64 Image (Documentation/arch/arm64/booting.rst): text_offset 0x08, image_size 0x10, flags
/// 0x18, magic "ARM\x64" at 0x38. RISC-V Image (Documentation/arch/riscv/boot-image-header.rst):
/// same layout, version at 0x2c, "RISCV\0\0\0" at 0x30 (deprecated), magic2 "RSC\x05" at 0x38.
public enum AKIProbe: FormatProbe {
  public static let id = "aki"
  public static let role = ProbeRole.container

  public enum Limits {
    /// Kernel version string read: `uname -a`-style strings are under 200 characters.
    public static let maxVersion = 256
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let r = ctx.headReader("aki")
    if r.matches(Array("HdrS".utf8), at: 0x202), r.matches([0x55, 0xaa], at: 0x1fe) { return try x86(ctx, r) }
    if r.matches([0x41, 0x52, 0x4d, 0x64], at: 0x38) { return try image(ctx, r, arch: "arm64") }
    if r.matches([0x52, 0x53, 0x43, 0x05], at: 0x38) { return try image(ctx, r, arch: "riscv") }
    if r.count >= 0x30, try r.u32LE(at: 0x24, "zImage magic") == 0x016f2818 { return try armZImage(ctx, r) }
    return nil
  }

  static func base(_ subformat: String) -> ImageInfo {
    var info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .aki, subformat: subformat)
    info.containerFormat = .aki
    info.notes.append("a kernel image, not a disk: qemu-img has no driver for it and would read it as raw bytes; boot it with -kernel")
    return info
  }

  static func x86(_ ctx: ProbeContext, _ r: ByteReader) throws(ImageError) -> ImageInfo {
    let version = try r.u16LE(at: 0x206, "version")
    guard version >= 0x0200, version < 0x0300 else {
      throw ImageError(.invalidField, format: "aki", field: "boot protocol version", offset: 0x206,
                       "is \(version >> 8).\(version & 0xff), not 2.x")
    }
    let setupSects = try r.u8(at: 0x1f1, "setup_sects")
    let loadflags = try r.u8(at: 0x211, "loadflags")
    let big = loadflags & 1 != 0
    var info = base(big ? "bzImage" : "zImage")
    var fs = JSONObject()
    fs.set("architecture", "x86")
    fs.set("boot-protocol", "\(version >> 8).\(version & 0xff)")
    // setup_sects 0 means 4 (boot.rst).
    let sects = setupSects == 0 ? 4 : Int(setupSects)
    fs.set("setup-sectors", sects)
    let sysBytes = UInt64(try r.u32LE(at: 0x1f4, "syssize")) * 16
    fs.set("syssize", sysBytes)
    fs.set("loadflags", Int(loadflags))
    fs.set("pe-stub", r.matches([0x4d, 0x5a], at: 0))
    if version >= 0x0208 {
      fs.set("payload-offset", Int(try r.u32LE(at: 0x248, "payload_offset")))
      fs.set("payload-length", Int(try r.u32LE(at: 0x24c, "payload_length")))
    }
    if version >= 0x020a { fs.set("init-size", Int(try r.u32LE(at: 0x260, "init_size"))) }
    if version >= 0x020c { fs.set("xloadflags", Int(try r.u16LE(at: 0x236, "xloadflags"))) }
    let ptr = try r.u16LE(at: 0x20e, "kernel_version")
    if ptr != 0 {
      let at = UInt64(ptr) + 0x200
      let text = try ctx.read(at: at, count: Limits.maxVersion)
      guard !text.isEmpty else {
        throw ImageError(.truncated, format: "aki", field: "kernel_version", offset: 0x20e,
                         "points at \(hex(at)), beyond the end of the file (\(ctx.size) bytes)")
      }
      fs.set("kernel-version", Text.ascii(text))
    }
    // The protected-mode kernel follows the setup sectors.
    let setupBytes = UInt64(sects + 1) * 512
    guard setupBytes <= ctx.size else {
      throw ImageError(.truncated, format: "aki", field: "setup_sects", offset: 0x1f1,
                       "says the setup code is \(setupBytes) bytes, but the file has \(ctx.size)")
    }
    // The kernel's build tool pads the protected-mode part to syssize paragraphs (the CRC in its
    // last 4 bytes), so a file shorter than setup + syssize lost part of the kernel.
    if setupBytes + sysBytes > ctx.size {
      info.findings.append(Finding("aki.truncated", .corrupt, field: "syssize", offset: 0x1f4,
                                   "the setup header says \(setupBytes) bytes of setup code and \(sysBytes) of kernel, the file has \(ctx.size)"))
    }
    info.formatSpecific = fs
    return info
  }

  static func image(_ ctx: ProbeContext, _ r: ByteReader, arch: String) throws(ImageError) -> ImageInfo {
    let textOffset = try r.u64LE(at: 0x08, "text_offset")
    let imageSize = try r.u64LE(at: 0x10, "image_size")
    let flags = try r.u64LE(at: 0x18, "flags")
    var info = base("\(arch)-image")
    var fs = JSONObject()
    fs.set("architecture", arch)
    fs.set("text-offset", textOffset)
    fs.set("image-size", imageSize)
    fs.set("flags", flags)
    if arch == "arm64" {
      fs.set("endianness", flags & 1 == 0 ? "little" : "big")
      let page = (flags >> 1) & 3
      fs.set("page-size", page == 1 ? "4K" : page == 2 ? "16K" : page == 3 ? "64K" : "unspecified")
      fs.set("pe-stub", r.matches([0x4d, 0x5a], at: 0))
    } else {
      let v = try r.u32LE(at: 0x2c, "version")
      fs.set("header-version", "\(v >> 16).\(v & 0xffff)")
    }
    info.formatSpecific = fs
    return info
  }

  static func armZImage(_ ctx: ProbeContext, _ r: ByteReader) throws(ImageError) -> ImageInfo {
    let start = try r.u32LE(at: 0x28, "start")
    let end = try r.u32LE(at: 0x2c, "end")
    guard end > start else {
      throw ImageError(.invalidField, format: "aki", field: "zImage end", offset: 0x2c,
                       "(\(hex(end))) is not after start (\(hex(start)))")
    }
    var info = base("arm-zImage")
    var fs = JSONObject()
    fs.set("architecture", "arm")
    fs.set("start", UInt64(start))
    fs.set("end", UInt64(end))
    fs.set("image-size", UInt64(end - start))
    info.formatSpecific = fs
    if UInt64(end - start) > ctx.size {
      info.findings.append(Finding("aki.truncated", .corrupt, field: "end", offset: 0x2c,
                                   "the zImage header says \(end - start) bytes, the file has \(ctx.size)"))
    }
    return info
  }
}
