import CLz4

/// LZ4 frame (magic 0x184D2204) and legacy (0x184C2102, `lz4 -l`, Linux initramfs) decoding
/// through liblz4; the only place liblz4 is called.
public enum Lz4 {
  /// Largest decoded size of one legacy block (8 MiB, fixed by the legacy format).
  public static let legacyBlockSize = 8 << 20

  /// Upper bound of a compressed legacy block (LZ4_compressBound(8 MiB)).
  public static var legacyMaxCompressedBlock: Int { Int(LZ4_compressBound(Int32(legacyBlockSize))) }

  /// Decodes one independent block; nil when it is malformed or does not fit `output`.
  public static func decodeBlock(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
    guard let i = input.baseAddress, let o = output.baseAddress, input.count <= Int(Int32.max),
          output.count <= Int(Int32.max) else { return nil }
    let n = LZ4_decompress_safe(i.assumingMemoryBound(to: CChar.self), o.assumingMemoryBound(to: CChar.self),
                                Int32(input.count), Int32(output.count))
    return n < 0 ? nil : Int(n)
  }

  /// The content size a frame header declares (only when the writer set the flag).
  public static func frameContentSize(_ head: ArraySlice<UInt8>) -> UInt64? {
    var dctx: OpaquePointer?
    guard LZ4F_isError(LZ4F_createDecompressionContext(&dctx, UInt32(LZ4F_VERSION))) == 0, let d = dctx else { return nil }
    defer { _ = LZ4F_freeDecompressionContext(d) }
    var info = LZ4F_frameInfo_t()
    let bytes = Array(head.prefix(64))
    var size = bytes.count
    let rc = bytes.withUnsafeBytes { LZ4F_getFrameInfo(d, &info, $0.baseAddress, &size) }
    guard LZ4F_isError(rc) == 0, info.contentSize > 0 else { return nil }
    return UInt64(info.contentSize)
  }
}

/// One LZ4 frame, decoded incrementally (block and content checksums are verified by liblz4).
public final class Lz4FrameDecoder: StreamDecoder {
  let dctx: OpaquePointer
  let format: String

  public init(format: String = "lz4") throws(ImageError) {
    self.format = format
    var d: OpaquePointer?
    guard LZ4F_isError(LZ4F_createDecompressionContext(&d, UInt32(LZ4F_VERSION))) == 0, let ctx = d else {
      throw ImageError(.io, format: format, field: "LZ4F_createDecompressionContext", "failed")
    }
    dctx = ctx
  }

  deinit { _ = LZ4F_freeDecompressionContext(dctx) }

  public func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, at offset: UInt64)
    throws(ImageError) -> DecodeStep
  {
    guard let outBase = output.baseAddress, output.count > 0 else { return DecodeStep(consumed: 0, produced: 0, ended: false) }
    var inSize = input.baseAddress == nil ? 0 : input.count
    var outSize = output.count
    let rc = LZ4F_decompress(dctx, outBase, &outSize, input.baseAddress, &inSize, nil)
    if LZ4F_isError(rc) != 0 {
      let why = String(cString: LZ4F_getErrorName(rc))
      throw ImageError(.invalidField, format: format, field: "lz4 frame", offset: offset &+ UInt64(inSize),
                       "does not decode: \(why)", finding: "compressed.truncated")
    }
    return DecodeStep(consumed: inSize, produced: outSize, ended: rc == 0)
  }
}
