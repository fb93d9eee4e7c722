/// Ramdisk images (the image service's `ari`): Linux initramfs, a cpio archive (newc "070701",
/// newc with checksums "070702", portable ASCII "070707", or old binary 0x71C7), usually
/// compressed (gzip, xz, zstd, lz4 frame or legacy, bzip2), possibly preceded by uncompressed
/// early-microcode cpio segments (Linux Documentation/arch/x86/microcode.rst).
///
/// newc header (110 ASCII bytes, hex fields): magic 6, ino 8, mode 8, uid 8, gid 8, nlink 8,
/// mtime 8, filesize 8, devmajor 8, devminor 8, rdevmajor 8, rdevminor 8, namesize 8, check 8;
/// the name (namesize bytes with its NUL) is padded so header + name is a multiple of 4, the data
/// likewise. odc header (76 bytes, octal): magic 6, dev 6, ino 6, mode 6, uid 6, gid 6, nlink 6,
/// rdev 6, mtime 11, namesize 6, filesize 11; no padding. Binary header (26 bytes, 16-bit words in
/// the writer's byte order): magic, dev, ino, mode, uid, gid, nlink, rdev, mtime (2 words),
/// namesize, filesize (2 words); name and data padded to even. The archive ends with "TRAILER!!!".
public enum ARIProbe: FormatProbe {
  public static let id = "ari"
  public static let role = ProbeRole.container

  public enum Limits {
    /// Member names reported per segment.
    public static let maxListed = 32
    /// Members walked per segment: bounds the header walk over a hostile archive.
    public static let maxMembers = 10_000
    /// Inflated bytes examined for member names of a compressed segment.
    public static let inflatedHead = 1 << 20
    /// Segments (early uncompressed cpio archives, then the main one) followed.
    public static let maxSegments = 8
    /// Zero padding skipped between segments (the kernel aligns them to 4 bytes; dracut pads to 512).
    public static let maxPadding = 1 << 20
  }

  public enum CpioFormat: String, Sendable { case newc, crc, odc, binary, binarySwapped = "binary-swapped" }

  public static func cpioFormat(_ b: ArraySlice<UInt8>) -> CpioFormat? {
    let a = Array(b.prefix(6))
    guard a.count >= 2 else { return nil }
    if a.count == 6 {
      switch String(decoding: a, as: UTF8.self) {
      case "070701": return .newc
      case "070702": return .crc
      case "070707": return .odc
      default: break
      }
    }
    if a[0] == 0xc7 && a[1] == 0x71 { return .binary }
    if a[0] == 0x71 && a[1] == 0xc7 { return .binarySwapped }
    return nil
  }

  struct Walk {
    var format: CpioFormat
    var members = 0
    var names: [String] = []
    var trailerEnd: UInt64?
    var stopped: String?
    /// The archive ends inside a header before its trailer (a cut file, not a limit).
    var truncated: ImageError?
  }

  static func field(_ b: [UInt8], _ at: Int, _ n: Int, radix: Int, _ name: String, base: UInt64) throws(ImageError) -> UInt64 {
    let s = String(decoding: b[at..<(at + n)], as: UTF8.self)
    guard let v = UInt64(s, radix: radix) else {
      throw ImageError(.invalidField, format: "ari", field: name, offset: base + UInt64(at), "'\(Text.ascii(b[at..<(at + n)]))' is not a number")
    }
    return v
  }

  /// Walks a cpio archive at `start` of `source` to its trailer, listing the first names.
  static func walk(_ source: ByteSource, start: UInt64, format: CpioFormat) throws(ImageError) -> Walk {
    var w = Walk(format: format)
    var off = start
    while w.members < Limits.maxMembers {
      let hsize: Int
      switch format {
      case .newc, .crc: hsize = 110
      case .odc: hsize = 76
      case .binary, .binarySwapped: hsize = 26
      }
      let h: [UInt8]
      do { h = try source.readExactly(at: off, count: hsize, format: "ari", field: "cpio header") } catch {
        if error.kind == .needsSeekable || error.kind == .truncated, w.members > 0 {
          w.stopped = error.description
          if error.kind == .truncated { w.truncated = error }
          return w
        }
        throw error
      }
      guard cpioFormat(h[...]) == format else {
        throw ImageError(.invalidField, format: "ari", field: "cpio magic", offset: off, "is not \(format.rawValue) (\(Text.ascii(h.prefix(6))))")
      }
      var nameSize: UInt64
      var fileSize: UInt64
      var namePad: UInt64 = 0
      var dataPad: UInt64 = 0
      switch format {
      case .newc, .crc:
        fileSize = try field(h, 54, 8, radix: 16, "c_filesize", base: off)
        nameSize = try field(h, 94, 8, radix: 16, "c_namesize", base: off)
        namePad = (4 - (110 + nameSize) % 4) % 4
        dataPad = (4 - fileSize % 4) % 4
      case .odc:
        nameSize = try field(h, 59, 6, radix: 8, "c_namesize", base: off)
        fileSize = try field(h, 65, 11, radix: 8, "c_filesize", base: off)
      case .binary, .binarySwapped:
        let le = format == .binary
        func word(_ i: Int) -> UInt64 { UInt64(le ? UInt16(h[i]) | UInt16(h[i + 1]) << 8 : UInt16(h[i]) << 8 | UInt16(h[i + 1])) }
        nameSize = word(20)
        fileSize = word(22) << 16 | word(24)
        namePad = nameSize % 2
        dataPad = fileSize % 2
      }
      guard nameSize >= 1, nameSize <= UInt64(Tar.Limits.maxName) else {
        throw ImageError(.invalidField, format: "ari", field: "c_namesize", offset: off, "is \(nameSize), expected 1..\(Tar.Limits.maxName)")
      }
      let nameBytes: [UInt8]
      do { nameBytes = try source.readExactly(at: off + UInt64(hsize), count: Int(nameSize), format: "ari", field: "cpio name") } catch {
        if error.kind == .needsSeekable, w.members > 0 { w.stopped = error.description; return w }
        throw error
      }
      let name = Text.utf8(nameBytes)
      let next = try Checked.add(off + UInt64(hsize) + nameSize + namePad, try Checked.add(fileSize, dataPad, "ari", "c_filesize"),
                                 "ari", "c_filesize", at: off)
      if name == "TRAILER!!!" {
        w.trailerEnd = next
        return w
      }
      w.members += 1
      if w.names.count < Limits.maxListed { w.names.append(name) }
      guard next <= source.size else {
        throw ImageError(.truncated, format: "ari", field: "c_filesize", offset: off,
                         "member '\(name)' of \(fileSize) bytes ends beyond the end of the archive (\(source.size) bytes)")
      }
      off = next
    }
    w.stopped = "more than \(Limits.maxMembers) members; listing stopped"
    return w
  }

  static func segmentJSON(_ w: Walk, offset: UInt64, compression: String?) -> JSON {
    var j = JSONObject()
    j.set("offset", offset)
    j.set("compression", compression ?? "none")
    j.set("cpio-format", w.format.rawValue)
    j.set("members", w.members)
    j.set("complete", w.trailerEnd != nil)
    j.set("names", JSON.array(w.names.map { .string($0) }))
    return j.json
  }

  /// Inflated head of a compressed cpio at `start`, or nil when it is not a compressed cpio.
  /// The decoder's error, if the compressed bytes end early or do not decode, comes with it.
  static func compressedCpio(_ source: ByteSource, at start: UInt64, codec: Codec) -> (MemorySource, CpioFormat, ImageError?)? {
    guard codec.canInflate else { return nil }
    let small = Inflate.head(source, codec: codec, start: start, limit: 512)
    guard let f = cpioFormat(small.bytes[...]) else { return nil }
    let big = Inflate.head(source, codec: codec, start: start, limit: Limits.inflatedHead)
    let complete = big.outcome.complete && big.outcome.error == nil
    let error = big.outcome.error.flatMap { $0.kind == .needsSeekable ? nil : $0 }
    return (MemorySource(big.bytes, name: "inflated", declaredSize: complete || error != nil ? nil : UInt64.max >> 2), f, error)
  }

  /// A cut archive or compressed stream: the kernel's unpacker stops there ("junk in compressed
  /// archive" or a missing trailer), so the ramdisk the image service stores is not the one built.
  static func truncation(_ w: Walk, decoder: ImageError?, at offset: UInt64) -> Finding? {
    if let e = decoder {
      return Finding("ari.truncated", .corrupt, field: "compressed data", offset: offset,
                     "the compressed cpio segment at \(hex(offset)) does not inflate to its end: \(e.description)")
    }
    if let e = w.truncated {
      return Finding("ari.truncated", .corrupt, field: "cpio header", offset: e.offset,
                     "the cpio archive at \(hex(offset)) ends after \(w.members) members without its TRAILER!!! entry: \(e.description)")
    }
    return nil
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    var segments: [JSON] = []
    var compression: String?
    var mainFormat: CpioFormat?
    var early = false
    var off: UInt64 = 0
    var findings: [Finding] = []
    if let f = cpioFormat(ctx.head[...]) {
      // Uncompressed segments (early microcode, or a whole uncompressed initramfs).
      var format = f
      for _ in 0..<Limits.maxSegments {
        let w = try walk(ctx.source, start: off, format: format)
        segments.append(segmentJSON(w, offset: off, compression: nil))
        if let f = truncation(w, decoder: nil, at: off) { findings.append(f) }
        mainFormat = format
        guard let end = w.trailerEnd, end < ctx.size else { break }
        // Skip zero padding, then another cpio or a compressed one.
        var p = end
        let pad = try ctx.read(at: p, count: Limits.maxPadding)
        guard let nz = pad.firstIndex(where: { $0 != 0 }) else { break }
        p += UInt64(nz)
        let next = try ctx.read(at: p, count: 16)
        if let f2 = cpioFormat(next[...]) {
          format = f2
          off = p
          early = true
          continue
        }
        if let codec = Codec.sniff(next[...]) {
          early = true
          compression = codec.rawValue
          if let (mem, cf, decodeError) = compressedCpio(ctx.source, at: p, codec: codec) {
            let w2 = try walk(mem, start: 0, format: cf)
            segments.append(segmentJSON(w2, offset: p, compression: codec.rawValue))
            if let f = truncation(w2, decoder: decodeError, at: p) { findings.append(f) }
            mainFormat = cf
          } else {
            var j = JSONObject()
            j.set("offset", p)
            j.set("compression", codec.rawValue)
            segments.append(j.json)
          }
        }
        break
      }
    } else if let codec = Codec.sniff(ctx.head[...]) {
      guard let (mem, cf, decodeError) = compressedCpio(ctx.source, at: 0, codec: codec) else { return nil }
      compression = codec.rawValue
      let w = try walk(mem, start: 0, format: cf)
      segments.append(segmentJSON(w, offset: 0, compression: codec.rawValue))
      if let f = truncation(w, decoder: decodeError, at: 0) { findings.append(f) }
      mainFormat = cf
    } else {
      return nil
    }
    var info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .ari, subformat: mainFormat?.rawValue)
    info.containerFormat = .ari
    var fs = JSONObject()
    fs.set("compression", compression ?? "none")
    fs.set("early-microcode", early)
    fs.set("segments", JSON.array(segments))
    info.formatSpecific = fs
    info.findings = findings
    info.notes.append("an initramfs (cpio archive), not a disk: qemu-img has no driver for it and would read it as raw bytes; boot it with -initrd")
    return info
  }
}
