/// Compressed streams: recognising gzip, xz, zstd, lz4 (frame and legacy) and bzip2 by their
/// magic, decoding their headers, and inflating them incrementally with bounded input, output and
/// expansion ratio. The C decoders live in `Native/`; this file holds the framing logic.

/// What one decoder call did.
public struct DecodeStep: Sendable {
  public var consumed: Int
  public var produced: Int
  /// The stream (or frame) is complete.
  public var ended: Bool
}

/// An incremental decoder over one compressed stream. `offset` is the absolute input offset of
/// `input`, used in error messages only.
public protocol StreamDecoder: AnyObject {
  func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, at offset: UInt64)
    throws(ImageError) -> DecodeStep
}

/// The compression formats imgtool recognises.
public enum Codec: String, Sendable {
  case gzip, xz, zstd, lz4
  case lz4Legacy = "lz4-legacy"
  case bzip2

  /// Whether imgtool can inflate it (bzip2 is recognised only: no libbz2 binding).
  public var canInflate: Bool { self != .bzip2 }

  /// Magic numbers, from the format specifications:
  /// gzip RFC 1952 (1f 8b, CM 8); xz file format 1.0.4 (FD '7zXZ' 00);
  /// zstd RFC 8878 (0xFD2FB528 LE); LZ4 frame format 1.6 (0x184D2204 LE) and legacy (0x184C2102 LE);
  /// bzip2 ("BZh" + level '1'..'9' + block magic 0x314159265359 or end-of-stream 0x177245385090).
  public static func sniff(_ b: ArraySlice<UInt8>) -> Codec? {
    let a = Array(b.prefix(10))
    func has(_ m: [UInt8]) -> Bool { a.count >= m.count && Array(a.prefix(m.count)) == m }
    if has([0x1f, 0x8b, 0x08]) && a.count >= 4 && a[3] & 0xe0 == 0 { return .gzip }
    if has([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) { return .xz }
    if has([0x28, 0xb5, 0x2f, 0xfd]) { return .zstd }
    if has([0x04, 0x22, 0x4d, 0x18]) { return .lz4 }
    if has([0x02, 0x21, 0x4c, 0x18]) { return .lz4Legacy }
    if has([0x42, 0x5a, 0x68]), a.count >= 10, a[3] >= 0x31, a[3] <= 0x39,
       Array(a[4..<10]) == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59] || Array(a[4..<10]) == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90]
    {
      return .bzip2
    }
    return nil
  }
}

/// The gzip member header (RFC 1952 section 2.3).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 2 | ID1 ID2 (1f 8b) |
/// | 2 | 1 | CM (8 = deflate) |
/// | 3 | 1 | FLG (FTEXT 1, FHCRC 2, FEXTRA 4, FNAME 8, FCOMMENT 16; 0xe0 reserved) |
/// | 4 | 4 | MTIME (LE, Unix seconds; 0 = none) |
/// | 8 | 1 | XFL (2 = best, 4 = fastest) |
/// | 9 | 1 | OS |
/// | 10 | 2+n | FEXTRA: XLEN (LE) then XLEN bytes |
/// | . | . | FNAME, FCOMMENT: zero-terminated (ISO 8859-1) |
/// | . | 2 | FHCRC: low 16 bits of the CRC-32 of the header bytes before it |
///
/// The member ends with CRC32 (LE) and ISIZE (LE, uncompressed length mod 2^32).
public struct GzipHeader: Sendable, Equatable {
  public var flags: UInt8
  public var mtime: UInt32
  public var extraFlags: UInt8
  public var os: UInt8
  public var name: String?
  public var comment: String?
  public var extraLength: Int
  /// Bytes of header before the deflate data.
  public var length: Int

  public enum Limits {
    /// FNAME and FCOMMENT are unbounded in RFC 1952; 64 KiB each is far beyond any real name
    /// (gzip stores a path) and keeps the header read to one bounded read.
    public static let maxText = 64 << 10
    /// The most header bytes read in one go: fixed part, FEXTRA (XLEN is 16 bits), two texts, FHCRC.
    public static let maxHeader = 12 + 0xffff + 2 * (maxText + 1) + 2
  }

  public static func parse(_ b: [UInt8], base: UInt64, format: String = "gzip") throws(ImageError) -> GzipHeader {
    let r = ByteReader(b, base: base, format: format)
    guard r.matches([0x1f, 0x8b], at: 0) else {
      throw ImageError(.invalidField, format: format, field: "ID1 ID2", offset: base, "is not 1f 8b")
    }
    let cm = try r.u8(at: 2, "CM")
    guard cm == 8 else {
      throw ImageError(.unsupported, format: format, field: "CM", offset: base + 2, "is \(cm); only 8 (deflate) is defined")
    }
    let flg = try r.u8(at: 3, "FLG")
    guard flg & 0xe0 == 0 else {
      throw ImageError(.invalidField, format: format, field: "FLG", offset: base + 3, "has reserved bits set (\(hex(flg)))")
    }
    var h = GzipHeader(flags: flg, mtime: try r.u32LE(at: 4, "MTIME"), extraFlags: try r.u8(at: 8, "XFL"),
                       os: try r.u8(at: 9, "OS"), name: nil, comment: nil, extraLength: 0, length: 10)
    var p = 10
    if flg & 4 != 0 {
      let xlen = Int(try r.u16LE(at: p, "XLEN"))
      _ = try r.bytes(at: p + 2, xlen, "FEXTRA")
      h.extraLength = xlen
      p += 2 + xlen
    }
    func zstring(_ field: String) throws(ImageError) -> String {
      var q = p
      while true {
        guard q < b.count else { throw ImageError.truncated(format, field, at: base + UInt64(p), need: UInt64(q - p + 1), have: UInt64(q - p)) }
        if b[q] == 0 { break }
        q += 1
        guard q - p <= Limits.maxText else {
          throw ImageError(.limitExceeded, format: format, field: field, offset: base + UInt64(p),
                           "is longer than \(Limits.maxText) bytes")
        }
      }
      // ISO 8859-1 per the RFC: map bytes to scalars directly.
      let s = String(String.UnicodeScalarView(b[p..<q].map { Unicode.Scalar($0) }))
      p = q + 1
      return s
    }
    if flg & 8 != 0 { h.name = try zstring("FNAME") }
    if flg & 16 != 0 { h.comment = try zstring("FCOMMENT") }
    if flg & 2 != 0 {
      let stored = try r.u16LE(at: p, "FHCRC")
      let computed = UInt16(truncatingIfNeeded: Zlib.crc32(Array(b[0..<p])))
      guard stored == computed else {
        throw ImageError(.invalidField, format: format, field: "FHCRC", offset: base + UInt64(p),
                         "is \(hex(stored)), computed \(hex(computed))", finding: "compressed.truncated")
      }
      p += 2
    }
    h.length = p
    return h
  }

  public var osName: String {
    switch os {
    case 0: return "FAT"
    case 3: return "Unix"
    case 7: return "Macintosh"
    case 11: return "NTFS"
    case 255: return "unknown"
    default: return "\(os)"
    }
  }
}

/// The xz stream index, read from the end of the file, gives the exact uncompressed size without
/// decoding (xz file format 1.0.4, sections 2.1.2 and 4).
enum XzIndex {
  enum Limits {
    /// The index holds one record per block (a few bytes each); 1 MiB is tens of thousands of
    /// blocks, more than `xz -T0` writes for multi-terabyte inputs.
    static let maxIndex = 1 << 20
    /// Bytes read from the end for the footer and stream padding: 64 KiB, what a forward-only
    /// stream keeps of its tail, so a piped .xz gets its size too.
    static let tailRead = 64 << 10
  }

  /// Uncompressed size of a single-stream .xz file; nil when the file holds several streams or the
  /// index is unusual (then the size is unknown until decoded).
  static func uncompressedSize(_ ctx: ProbeContext) throws(ImageError) -> UInt64? {
    let tail = try ctx.tail(Limits.tailRead, "xz")
    var end = tail.count
    while end >= 4, tail.bytes[(end - 4)..<end].allSatisfy({ $0 == 0 }) { end -= 4 }
    guard end >= 12 else { return nil }
    let footerAt = end - 12
    guard tail.matches([0x59, 0x5a], at: footerAt + 10) else {
      throw ImageError(.invalidField, format: "xz", field: "stream footer magic", offset: tail.base + UInt64(footerAt + 10),
                       "is not 'YZ' (truncated or trailing data)", finding: "compressed.truncated")
    }
    let storedCRC = try tail.u32LE(at: footerAt, "footer CRC32")
    let crc = Zlib.crc32(Array(tail.bytes[(footerAt + 4)..<(footerAt + 10)]))
    guard storedCRC == crc else {
      throw ImageError(.invalidField, format: "xz", field: "footer CRC32", offset: tail.base + UInt64(footerAt),
                       "is \(hex(storedCRC)), computed \(hex(crc))", finding: "compressed.truncated")
    }
    let backward = UInt64(try tail.u32LE(at: footerAt + 4, "Backward Size"))
    let indexSize = (backward + 1) * 4
    let footerAbs = tail.base + UInt64(footerAt)
    guard indexSize <= UInt64(Limits.maxIndex), indexSize <= footerAbs else { return nil }
    let idx = try ctx.reader(at: footerAbs - indexSize, count: Int(indexSize), "xz", "index")
    guard try idx.u8(at: 0, "index indicator") == 0 else {
      throw ImageError(.invalidField, format: "xz", field: "index indicator", offset: idx.base, "is not 0x00")
    }
    var p = 1
    func varint(_ field: String) throws(ImageError) -> UInt64 {
      var v: UInt64 = 0
      for i in 0..<9 {
        let b = try idx.u8(at: p, field)
        p += 1
        v |= UInt64(b & 0x7f) << (7 * UInt64(i))
        if b & 0x80 == 0 { return v }
      }
      throw ImageError(.invalidField, format: "xz", field: field, offset: idx.base + UInt64(p), "is longer than 9 bytes")
    }
    let records = try varint("Number of Records")
    guard records <= indexSize else { return nil }  // each record takes at least 2 bytes
    var unpadded: UInt64 = 0
    var total: UInt64 = 0
    for _ in 0..<records {
      let u = try varint("Unpadded Size")
      let s = try varint("Uncompressed Size")
      unpadded = try Checked.add(unpadded, (u + 3) & ~3, "xz", "Unpadded Size")
      total = try Checked.add(total, s, "xz", "Uncompressed Size")
    }
    // Single stream when header + blocks + index + footer account for every byte before the padding.
    let streamSize = try Checked.add(12 + 12 + indexSize, unpadded, "xz", "stream size")
    return streamSize == footerAbs + 12 ? total : nil
  }
}

/// The result of inflating (part of) a compressed input.
public struct InflateOutcome: Sendable {
  public var codec: Codec
  /// Input bytes consumed, from the start offset.
  public var consumed: UInt64 = 0
  /// Output bytes produced (delivered to the sink).
  public var produced: UInt64 = 0
  /// Complete streams (gzip members, xz streams, zstd/lz4 frames).
  public var streams = 0
  /// Every stream ended and the input was consumed to its end (or to trailing data).
  public var complete = false
  /// The sink asked to stop (enough output for detection).
  public var stoppedBySink = false
  /// `maxOutput` reached before the end of the data.
  public var hitOutputLimit = false
  /// The expansion ratio guard fired.
  public var hitRatioGuard = false
  /// Bytes after the last stream that are not another stream: (absolute offset, count, all zero).
  public var trailing: (offset: UInt64, count: UInt64, zeros: Bool)?
  /// A decode error, truncation or integrity-check failure.
  public var error: ImageError?
  /// Header of the first gzip member.
  public var gzipHeader: GzipHeader?
  /// Integrity checks verified (gzip CRC32 + ISIZE per member).
  public var checksVerified = 0
}

public enum Inflate {
  public enum Limits {
    /// Input read per step: 1 MiB, the same piece size as every other streaming pass.
    public static let inputChunk = 1 << 20
    /// Output buffer per step.
    public static let outputChunk = 1 << 20
    /// liblzma memory limit: xz -9 needs 65 MiB to decode; 256 MiB leaves room for custom
    /// dictionaries while bounding what a header can make imgtool allocate.
    public static let xzMemory: UInt64 = 256 << 20
    /// zstd window log limit: 2^27 = 128 MiB, zstd's own default for streaming decoders.
    public static let zstdWindowLog: Int32 = 27
    /// Streams (members, frames) followed in one file; concatenation is legal but thousands of
    /// tiny members only cost time.
    public static let maxStreams = 4096
  }

  /// A stop rule on the expansion ratio: stop once output exceeds `after` bytes and
  /// output / input exceeds `ratio`.
  public struct RatioGuard: Sendable {
    public var after: UInt64
    public var ratio: UInt64
    public init(after: UInt64, ratio: UInt64) { self.after = after; self.ratio = ratio }
  }

  static func decoder(_ codec: Codec) throws(ImageError) -> StreamDecoder {
    switch codec {
    case .gzip: return try ZlibInflater(.raw, format: "gzip")
    case .xz: return try XzDecoder(memoryLimit: Limits.xzMemory)
    case .zstd: return try ZstdDecoder(windowLogMax: Limits.zstdWindowLog)
    case .lz4: return try Lz4FrameDecoder()
    case .lz4Legacy, .bzip2:
      throw ImageError(.unsupported, format: codec.rawValue, field: "decoder", "has no streaming decoder")
    }
  }

  /// Inflates `source` from `start`, handing output to `sink` in pieces of at most 1 MiB. The
  /// sink returns false to stop. Never throws: errors end up in the outcome.
  public static func run(_ source: ByteSource, codec: Codec, start: UInt64 = 0, maxOutput: UInt64,
                         ratioGuard: RatioGuard? = nil,
                         sink: (UnsafeRawBufferPointer) throws(ImageError) -> Bool) -> InflateOutcome
  {
    var out = InflateOutcome(codec: codec)
    guard codec.canInflate else {
      out.error = ImageError(.unsupported, format: codec.rawValue, field: "decoder",
                             "is not available (bzip2 is recognised but not inflated)")
      return out
    }
    let outBuf = UnsafeMutableRawBufferPointer.allocate(byteCount: codec == .lz4Legacy ? Lz4.legacyBlockSize : Limits.outputChunk,
                                                        alignment: 16)
    defer { outBuf.deallocate() }
    var pos = start
    do throws(ImageError) {
      // Returns false when the caller must stop (sink, limits).
      func deliver(_ n: Int) throws(ImageError) -> Bool {
        guard n > 0 else { return true }
        var take = n
        if out.produced + UInt64(n) > maxOutput {
          take = Int(maxOutput - out.produced)
          out.hitOutputLimit = true
        }
        out.produced += UInt64(take)
        if take > 0, try !sink(UnsafeRawBufferPointer(rebasing: outBuf[0..<take])) { out.stoppedBySink = true; return false }
        if out.hitOutputLimit { return false }
        if let g = ratioGuard, out.produced > g.after, out.produced / max(pos - start, 1) > g.ratio {
          out.hitRatioGuard = true
          return false
        }
        return true
      }

      streams: while true {
        guard out.streams < Limits.maxStreams else {
          throw ImageError(.limitExceeded, format: codec.rawValue, field: "streams", offset: pos,
                           "more than \(Limits.maxStreams) concatenated streams")
        }
        if codec == .lz4Legacy {
          // Legacy frame: magic, then blocks of (u32 LE compressed size, data), each decoding to at
          // most 8 MiB. The stream ends at end of input or at a size that cannot be a block.
          pos += 4
          while true {
            let sizeBytes = try source.read(at: pos, count: 4)
            if sizeBytes.count < 4 {
              if !sizeBytes.isEmpty { out.trailing = (pos, UInt64(sizeBytes.count), sizeBytes.allSatisfy { $0 == 0 }) }
              out.streams += 1
              out.complete = true
              break streams
            }
            let n = UInt32(sizeBytes[0]) | UInt32(sizeBytes[1]) << 8 | UInt32(sizeBytes[2]) << 16 | UInt32(sizeBytes[3]) << 24
            if n == 0x184C2102 { out.streams += 1; continue streams }
            guard n > 0, Int(n) <= Lz4.legacyMaxCompressedBlock else { out.streams += 1; break }
            let block = try source.read(at: pos + 4, count: Int(n))
            guard block.count == Int(n) else {
              var e = ImageError.truncated("lz4", "legacy block", at: pos + 4, need: UInt64(n), have: UInt64(block.count))
              e.finding = "compressed.truncated"
              throw e
            }
            guard let produced = block.withUnsafeBytes({ Lz4.decodeBlock($0, into: outBuf) }) else {
              throw ImageError(.invalidField, format: "lz4", field: "legacy block", offset: pos + 4,
                               "does not decode", finding: "compressed.truncated")
            }
            pos += 4 + UInt64(n)
            out.consumed = pos - start
            guard try deliver(produced) else { return out }
          }
        } else {
          var memberStart = pos
          var crc: UInt32 = 0
          var memberSize: UInt64 = 0
          if codec == .gzip {
            // Most headers are a few bytes: read 1 KiB, and the most a header can be only if needed.
            var hb = try source.read(at: pos, count: 1024)
            var parsed: GzipHeader?
            do { parsed = try GzipHeader.parse(hb, base: pos) } catch {
              guard error.kind == .truncated, hb.count == 1024 else { throw error }
              hb = try source.read(at: pos, count: GzipHeader.Limits.maxHeader)
              parsed = try GzipHeader.parse(hb, base: pos)
            }
            guard let h = parsed else { break streams }
            if out.gzipHeader == nil { out.gzipHeader = h }
            pos += UInt64(h.length)
            memberStart = pos
          }
          let dec = try decoder(codec)
          var chunk: [UInt8] = []
          var used = 0
          var ended = false
          while !ended {
            if used == chunk.count {
              chunk = try source.read(at: pos, count: Limits.inputChunk)
              used = 0
            }
            let atEOF = chunk.isEmpty
            var failure: ImageError?
            let step = chunk.withUnsafeBytes { (raw) -> DecodeStep in
              let rest = atEOF ? UnsafeRawBufferPointer(start: nil, count: 0) : UnsafeRawBufferPointer(rebasing: raw[used...])
              do throws(ImageError) { return try dec.step(rest, outBuf, at: pos) } catch {
                failure = error
                return DecodeStep(consumed: 0, produced: 0, ended: false)
              }
            }
            if let failure { throw failure }
            used += step.consumed
            pos += UInt64(step.consumed)
            ended = step.ended
            if codec == .gzip, step.produced > 0 {
              crc = Zlib.crc32(crc, UnsafeRawBufferPointer(rebasing: outBuf[0..<step.produced]))
              memberSize &+= UInt64(step.produced)
            }
            out.consumed = pos - start
            guard try deliver(step.produced) else { return out }
            if atEOF && step.produced == 0 && !ended {
              throw ImageError(.truncated, format: codec.rawValue, field: "compressed data", offset: pos,
                               "ends before the end of its stream (\(pos - memberStart) bytes of stream read)",
                               finding: "compressed.truncated")
            }
            if !atEOF && step.consumed == 0 && step.produced == 0 && !ended {
              throw ImageError(.invalidField, format: codec.rawValue, field: "compressed data", offset: pos,
                               "makes no progress", finding: "compressed.truncated")
            }
          }
          if codec == .gzip {
            let t = try source.read(at: pos, count: 8)
            guard t.count == 8 else {
              throw ImageError(.truncated, format: "gzip", field: "CRC32/ISIZE trailer", offset: pos,
                               "needs 8 bytes, the input has \(t.count) (truncated)", finding: "compressed.truncated")
            }
            let r = ByteReader(t, base: pos, format: "gzip")
            let storedCRC = try r.u32LE(at: 0, "CRC32")
            let isize = try r.u32LE(at: 4, "ISIZE")
            guard storedCRC == crc else {
              throw ImageError(.invalidField, format: "gzip", field: "CRC32", offset: pos,
                               "is \(hex(storedCRC)), computed \(hex(crc)) over the inflated data", finding: "compressed.truncated")
            }
            guard isize == UInt32(truncatingIfNeeded: memberSize) else {
              throw ImageError(.invalidField, format: "gzip", field: "ISIZE", offset: pos + 4,
                               "is \(isize), inflated \(memberSize) bytes (mod 2^32: \(UInt32(truncatingIfNeeded: memberSize)))",
                               finding: "compressed.truncated")
            }
            out.checksVerified += 1
            pos += 8
          }
          out.streams += 1
          out.consumed = pos - start
        }
        // Another stream of the same codec may follow (concatenation is legal for all of them).
        guard pos < source.size else { out.complete = true; break }
        let next = try source.read(at: pos, count: 16)
        if Codec.sniff(next[...]) == codec { continue }
        // Zero padding (xz stream padding, tape blocks after gzip) or foreign bytes.
        let rest = source.size - pos
        let probe = try source.read(at: pos, count: Int(min(rest, 64 << 10)))
        out.trailing = (pos, rest, rest <= 64 << 10 && probe.allSatisfy { $0 == 0 })
        out.complete = true
        break
      }
    } catch {
      out.error = error
    }
    return out
  }

  /// Inflates at most `limit` bytes from the start of the payload into memory.
  public static func head(_ source: ByteSource, codec: Codec, start: UInt64 = 0, limit: Int) -> (bytes: [UInt8], outcome: InflateOutcome) {
    var bytes: [UInt8] = []
    let outcome = run(source, codec: codec, start: start, maxOutput: UInt64(limit)) { (piece) throws(ImageError) -> Bool in
      bytes.append(contentsOf: piece)
      return true
    }
    return (bytes, outcome)
  }
}
