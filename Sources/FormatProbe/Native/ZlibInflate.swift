import CZlib

/// One-shot zlib (RFC 1950) inflate into a caller's fixed-size buffer: checks that a compressed
/// VMDK grain expands to exactly one grain, as qemu's `uncompress()` call requires.
enum ZlibGrainInflate {
  /// Bytes produced when `input` is one complete zlib stream whose output fits in `output`;
  /// nil when the stream is invalid, truncated or would overflow the buffer.
  static func inflate(_ input: ArraySlice<UInt8>, into output: inout [UInt8]) -> Int? {
    var stream = z_stream()
    guard czlib_inflateInit2(&stream, 15) == Z_OK else { return nil }
    defer { inflateEnd(&stream) }
    let result: Int32 = input.withUnsafeBytes { inp in
      output.withUnsafeMutableBytes { out in
        guard let i = inp.baseAddress, let o = out.baseAddress else { return Z_BUF_ERROR }
        stream.next_in = UnsafeMutablePointer(mutating: i.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(inp.count)
        stream.next_out = o.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(out.count)
        return CZlib.inflate(&stream, Z_FINISH)
      }
    }
    return result == Z_STREAM_END ? Int(stream.total_out) : nil
  }
}
