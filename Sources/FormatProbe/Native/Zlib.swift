import CZlib

/// zlib: CRC-32 and DEFLATE inflation (raw, zlib-wrapped or gzip-wrapped streams). The only place
/// zlib is called. Inflation is incremental (`step`), so callers bound input and output themselves.
public enum Zlib {
  /// CRC-32 (ISO 3309 / ITU-T V.42, the gzip and PNG polynomial) continued from `crc`.
  public static func crc32(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let p = bytes.baseAddress, bytes.count > 0 else { return crc }
    var c = UInt(crc)
    var rest = bytes.count
    var q = p.assumingMemoryBound(to: UInt8.self)
    // zlib's length argument is a 32-bit uInt: feed at most 1 GiB per call.
    while rest > 0 {
      let n = min(rest, 1 << 30)
      c = CZlib.crc32(c, q, UInt32(n))
      q += n
      rest -= n
    }
    return UInt32(truncatingIfNeeded: c)
  }

  public static func crc32(_ bytes: [UInt8], _ crc: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { crc32(crc, $0) }
  }
}

/// One DEFLATE stream being inflated. `step` consumes some input and produces some output; it
/// reports `ended` when the stream's final block (and, for zlib/gzip wrapping, its trailer) is done.
public final class ZlibInflater: StreamDecoder {
  public enum Wrapping: Sendable {
    /// Bare DEFLATE (RFC 1951): qcow2 compressed clusters, gzip members after their header.
    case raw
    /// zlib (RFC 1950): VMDK streamOptimized grains.
    case zlib
    /// gzip (RFC 1952), header and trailer checked by zlib.
    case gzip
  }

  var stream = z_stream()
  var ready = false
  let format: String

  public init(_ wrapping: Wrapping, format: String = "deflate") throws(ImageError) {
    self.format = format
    let bits: Int32
    switch wrapping {
    case .raw: bits = -15
    case .zlib: bits = 15
    case .gzip: bits = 31
    }
    let rc = czlib_inflateInit2(&stream, bits)
    guard rc == Z_OK else {
      throw ImageError(.io, format: format, field: "inflate", "zlib inflateInit2 failed (\(rc))")
    }
    ready = true
  }

  deinit { if ready { inflateEnd(&stream) } }

  public func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, at offset: UInt64)
    throws(ImageError) -> DecodeStep
  {
    guard let outBase = output.baseAddress, output.count > 0 else {
      return DecodeStep(consumed: 0, produced: 0, ended: false)
    }
    // zlib accepts a null next_in with avail_in 0 (flushing pending output at end of input).
    let inCount = input.baseAddress == nil ? 0 : min(input.count, Int(UInt32.max))
    let outCount = min(output.count, Int(UInt32.max))
    stream.next_in = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: UInt8.self)) }
    stream.avail_in = UInt32(inCount)
    stream.next_out = outBase.assumingMemoryBound(to: UInt8.self)
    stream.avail_out = UInt32(outCount)
    let rc = inflate(&stream, Z_NO_FLUSH)
    let consumed = inCount - Int(stream.avail_in)
    let produced = outCount - Int(stream.avail_out)
    stream.next_in = nil
    stream.next_out = nil
    switch rc {
    case Z_OK: return DecodeStep(consumed: consumed, produced: produced, ended: false)
    case Z_STREAM_END: return DecodeStep(consumed: consumed, produced: produced, ended: true)
    case Z_BUF_ERROR:
      // No progress possible: more input is needed (the caller sees consumed == 0).
      return DecodeStep(consumed: consumed, produced: produced, ended: false)
    default:
      let why = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
      throw ImageError(.invalidField, format: format, field: "deflate data", offset: offset &+ UInt64(consumed),
                       "does not inflate: \(why)", finding: "compressed.truncated")
    }
  }
}
