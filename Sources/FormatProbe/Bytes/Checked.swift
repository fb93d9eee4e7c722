/// Overflow-checked arithmetic for values that come from image bytes. A Swift overflow trap is a
/// denial of service in a validator, so header-derived math goes through these, which throw an
/// `ImageError` naming the field instead.
public enum Checked {
  public static func add(_ a: UInt64, _ b: UInt64, _ format: String, _ field: String, at offset: UInt64? = nil)
    throws(ImageError) -> UInt64
  {
    let (r, o) = a.addingReportingOverflow(b)
    guard !o else { throw ImageError(.invalidField, format: format, field: field, offset: offset, "overflows 64 bits (\(a) + \(b))") }
    return r
  }

  public static func mul(_ a: UInt64, _ b: UInt64, _ format: String, _ field: String, at offset: UInt64? = nil)
    throws(ImageError) -> UInt64
  {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    guard !o else { throw ImageError(.invalidField, format: format, field: field, offset: offset, "overflows 64 bits (\(a) x \(b))") }
    return r
  }

  /// `value << bits`, refusing shifts of 64 or more and results that lose bits.
  public static func shiftLeft(_ value: UInt64, _ bits: UInt64, _ format: String, _ field: String, at offset: UInt64? = nil)
    throws(ImageError) -> UInt64
  {
    guard bits < 64, value <= (UInt64.max >> bits) else {
      throw ImageError(.invalidField, format: format, field: field, offset: offset, "\(value) << \(bits) overflows 64 bits")
    }
    return value << bits
  }

  /// An `Int` for indexing or allocation, refusing values beyond `limit`.
  public static func int(_ v: UInt64, max limit: Int, _ format: String, _ field: String, at offset: UInt64? = nil)
    throws(ImageError) -> Int
  {
    guard v <= UInt64(limit) else {
      throw ImageError(.limitExceeded, format: format, field: field, offset: offset, "is \(v), limit \(limit)")
    }
    return Int(v)
  }

  /// Ceiling division without overflow (`b` > 0).
  public static func ceilDiv(_ a: UInt64, _ b: UInt64) -> UInt64 {
    b == 0 ? 0 : a / b + (a % b == 0 ? 0 : 1)
  }

  /// Validates a table of `count` entries of `entrySize` bytes at `offset`: its byte size must be
  /// within `maxBytes` (compared by division, so it cannot overflow) and, when the input size is
  /// known, the table must lie inside it. Returns the table's size in bytes.
  public static func table(offset: UInt64, count: UInt64, entrySize: UInt64, maxBytes: UInt64, inputSize: UInt64?,
                           _ format: String, _ field: String, at fieldOffset: UInt64? = nil) throws(ImageError) -> Int
  {
    guard entrySize > 0, count <= maxBytes / entrySize else {
      throw ImageError(.limitExceeded, format: format, field: field, offset: fieldOffset,
                       "declares \(count) entries of \(entrySize) bytes, limit \(maxBytes) bytes")
    }
    let bytes = count * entrySize
    if let size = inputSize {
      guard offset <= size, bytes <= size - offset else {
        throw ImageError(.truncated, format: format, field: field, offset: fieldOffset,
                         "table at \(hex(offset)) of \(bytes) bytes ends beyond the end of the input (\(size) bytes)")
      }
    }
    return Int(bytes)
  }

  public static func isPowerOfTwo(_ v: UInt64) -> Bool { v != 0 && v & (v - 1) == 0 }
}
