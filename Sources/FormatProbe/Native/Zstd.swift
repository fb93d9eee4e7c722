import CZstd

/// Zstandard decoding through libzstd; the only place libzstd is called.
public enum Zstd {
  /// The frame content size declared in a frame header, when present.
  public static func frameContentSize(_ head: ArraySlice<UInt8>) -> UInt64? {
    let v = Array(head).withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
    // ZSTD_CONTENTSIZE_UNKNOWN (-1) and ZSTD_CONTENTSIZE_ERROR (-2).
    return v >= UInt64.max - 1 ? nil : UInt64(v)
  }
}

/// One or more consecutive zstd frames (skippable frames included), decoded incrementally.
public final class ZstdDecoder: StreamDecoder {
  let ctx: OpaquePointer
  let format: String

  /// `windowLogMax` caps the window (memory) a frame may demand: 27 is 128 MiB, zstd's own default.
  public init(windowLogMax: Int32 = 27, format: String = "zstd") throws(ImageError) {
    self.format = format
    guard let c = ZSTD_createDCtx() else {
      throw ImageError(.io, format: format, field: "ZSTD_createDCtx", "failed")
    }
    ctx = c
    _ = ZSTD_DCtx_setParameter(ctx, ZSTD_d_windowLogMax, windowLogMax)
  }

  deinit { ZSTD_freeDCtx(ctx) }

  public func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, at offset: UInt64)
    throws(ImageError) -> DecodeStep
  {
    guard let outBase = output.baseAddress, output.count > 0 else { return DecodeStep(consumed: 0, produced: 0, ended: false) }
    var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.baseAddress == nil ? 0 : input.count, pos: 0)
    var outBuf = ZSTD_outBuffer(dst: outBase, size: output.count, pos: 0)
    let rc = ZSTD_decompressStream(ctx, &outBuf, &inBuf)
    if ZSTD_isError(rc) != 0 {
      let why = String(cString: ZSTD_getErrorName(rc))
      throw ImageError(.invalidField, format: format, field: "zstd data", offset: offset &+ UInt64(inBuf.pos),
                       "does not decode: \(why)", finding: "compressed.truncated")
    }
    // 0: a frame is completely decoded and flushed.
    return DecodeStep(consumed: inBuf.pos, produced: outBuf.pos, ended: rc == 0)
  }
}
