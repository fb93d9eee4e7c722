import CLzma

/// xz (.xz container, LZMA2) decoding through liblzma; the only place liblzma is called. The
/// decoder verifies each block's integrity check (CRC32/CRC64/SHA-256) itself.
public final class XzDecoder: StreamDecoder {
  var stream = lzma_stream()
  var ready = false
  let format: String

  /// `memoryLimit` caps the decoder's dictionary and buffers; xz -9 needs about 65 MiB.
  public init(memoryLimit: UInt64, format: String = "xz") throws(ImageError) {
    self.format = format
    let rc = lzma_stream_decoder(&stream, memoryLimit, 0)
    guard rc == LZMA_OK else {
      throw ImageError(.io, format: format, field: "lzma_stream_decoder", "failed (\(rc.rawValue))")
    }
    ready = true
  }

  deinit { if ready { lzma_end(&stream) } }

  public func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, at offset: UInt64)
    throws(ImageError) -> DecodeStep
  {
    guard let outBase = output.baseAddress, output.count > 0 else { return DecodeStep(consumed: 0, produced: 0, ended: false) }
    stream.next_in = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
    stream.avail_in = input.baseAddress == nil ? 0 : input.count
    stream.next_out = outBase.assumingMemoryBound(to: UInt8.self)
    stream.avail_out = output.count
    // At the end of the input, LZMA_FINISH makes a truncated stream an error instead of a wait.
    let rc = lzma_code(&stream, input.count == 0 ? LZMA_FINISH : LZMA_RUN)
    let consumed = input.count - stream.avail_in
    let produced = output.count - stream.avail_out
    stream.next_in = nil
    stream.next_out = nil
    switch rc {
    case LZMA_OK, LZMA_BUF_ERROR: return DecodeStep(consumed: consumed, produced: produced, ended: false)
    case LZMA_STREAM_END: return DecodeStep(consumed: consumed, produced: produced, ended: true)
    case LZMA_MEMLIMIT_ERROR:
      throw ImageError(.limitExceeded, format: format, field: "dictionary", offset: offset,
                       "needs more than the decoder memory limit (\(lzma_memusage(&stream)) bytes wanted)")
    case LZMA_FORMAT_ERROR, LZMA_OPTIONS_ERROR:
      throw ImageError(.invalidField, format: format, field: "stream header", offset: offset,
                       "is not a supported xz stream (\(rc.rawValue))")
    default:
      let why = rc == LZMA_DATA_ERROR ? "corrupt data" : rc == LZMA_BUF_ERROR ? "truncated" : "error \(rc.rawValue)"
      throw ImageError(.invalidField, format: format, field: "xz data", offset: offset &+ UInt64(consumed),
                       "does not decode: \(why)", finding: "compressed.truncated")
    }
  }
}
