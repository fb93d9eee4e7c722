/// The one bounds-checked reader every image byte passes through.
///
/// A `ByteReader` is a window of bytes read from the input at absolute offset `base`. Reads advance
/// `position` (relative to the window); `*(at:)` variants peek without moving. Endianness is in every
/// name and every read carries the field name, so an out-of-range read becomes
/// `qcow2: l1_table_offset at 0x28 needs 8 bytes, the input has 3 from there (truncated)`.
/// No read traps: indices are checked before any load.
public struct ByteReader: Sendable {
  public let bytes: [UInt8]
  /// Absolute offset of `bytes[0]` in the input.
  public let base: UInt64
  /// Format name used in errors.
  public let format: String
  /// Read position, relative to the window.
  public private(set) var position: Int = 0

  public init(_ bytes: [UInt8], base: UInt64 = 0, format: String) {
    self.bytes = bytes
    self.base = base
    self.format = format
  }

  public var count: Int { bytes.count }
  public var remaining: Int { bytes.count - position }
  /// Absolute offset of the read position.
  public var offset: UInt64 { base &+ UInt64(position) }

  @inline(__always)
  func check(_ at: Int, _ n: Int, _ field: String) throws(ImageError) {
    // at >= 0, n >= 0 and at <= count - n, compared by subtraction so it cannot overflow.
    guard at >= 0, n >= 0, at <= bytes.count, n <= bytes.count - at else {
      let have = at >= 0 && at <= bytes.count ? bytes.count - at : 0
      throw ImageError.truncated(format, field, at: base &+ UInt64(max(at, 0)), need: UInt64(max(n, 0)),
                                 have: UInt64(have))
    }
  }

  public mutating func seek(to relative: Int, _ field: String = "seek") throws(ImageError) {
    try check(relative, 0, field)
    position = relative
  }

  public mutating func skip(_ n: Int, _ field: String = "reserved") throws(ImageError) {
    try check(position, n, field)
    position += n
  }

  // MARK: peeking (absolute within the window, no movement)

  @inline(__always) func load<T: FixedWidthInteger>(_ at: Int, _ t: T.Type, _ field: String) throws(ImageError) -> T {
    try check(at, MemoryLayout<T>.size, field)
    return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) }
  }

  public func u8(at: Int, _ field: String) throws(ImageError) -> UInt8 { try load(at, UInt8.self, field) }
  public func u16LE(at: Int, _ field: String) throws(ImageError) -> UInt16 { UInt16(littleEndian: try load(at, UInt16.self, field)) }
  public func u16BE(at: Int, _ field: String) throws(ImageError) -> UInt16 { UInt16(bigEndian: try load(at, UInt16.self, field)) }
  public func u32LE(at: Int, _ field: String) throws(ImageError) -> UInt32 { UInt32(littleEndian: try load(at, UInt32.self, field)) }
  public func u32BE(at: Int, _ field: String) throws(ImageError) -> UInt32 { UInt32(bigEndian: try load(at, UInt32.self, field)) }
  public func u64LE(at: Int, _ field: String) throws(ImageError) -> UInt64 { UInt64(littleEndian: try load(at, UInt64.self, field)) }
  public func u64BE(at: Int, _ field: String) throws(ImageError) -> UInt64 { UInt64(bigEndian: try load(at, UInt64.self, field)) }

  public func bytes(at: Int, _ n: Int, _ field: String) throws(ImageError) -> ArraySlice<UInt8> {
    try check(at, n, field)
    return bytes[at..<(at + n)]
  }

  /// True when the window holds `magic` at `at` (false, not an error, when it is too short).
  public func matches(_ magic: [UInt8], at: Int) -> Bool {
    guard at >= 0, at <= bytes.count, magic.count <= bytes.count - at else { return false }
    for i in 0..<magic.count where bytes[at + i] != magic[i] { return false }
    return true
  }

  // MARK: reading (advances)

  @inline(__always) mutating func next<T: FixedWidthInteger>(_ t: T.Type, _ field: String) throws(ImageError) -> T {
    let v = try load(position, T.self, field)
    position += MemoryLayout<T>.size
    return v
  }

  public mutating func u8(_ field: String) throws(ImageError) -> UInt8 { try next(UInt8.self, field) }
  public mutating func u16LE(_ field: String) throws(ImageError) -> UInt16 { UInt16(littleEndian: try next(UInt16.self, field)) }
  public mutating func u16BE(_ field: String) throws(ImageError) -> UInt16 { UInt16(bigEndian: try next(UInt16.self, field)) }
  public mutating func u32LE(_ field: String) throws(ImageError) -> UInt32 { UInt32(littleEndian: try next(UInt32.self, field)) }
  public mutating func u32BE(_ field: String) throws(ImageError) -> UInt32 { UInt32(bigEndian: try next(UInt32.self, field)) }
  public mutating func u64LE(_ field: String) throws(ImageError) -> UInt64 { UInt64(littleEndian: try next(UInt64.self, field)) }
  public mutating func u64BE(_ field: String) throws(ImageError) -> UInt64 { UInt64(bigEndian: try next(UInt64.self, field)) }

  public mutating func bytes(_ n: Int, _ field: String) throws(ImageError) -> ArraySlice<UInt8> {
    let s = try bytes(at: position, n, field)
    position += n
    return s
  }

  /// A GUID stored the Microsoft way (first three groups little-endian), rendered lower-case.
  public mutating func guidMixedEndian(_ field: String) throws(ImageError) -> String {
    GUID.mixedEndian(try bytes(16, field))
  }

  /// A UUID stored in network order (RFC 4122), rendered lower-case.
  public mutating func uuidBigEndian(_ field: String) throws(ImageError) -> String {
    GUID.bigEndian(try bytes(16, field))
  }

  /// A fixed-width text field: printable ASCII up to the first NUL, trailing blanks removed.
  public mutating func text(_ n: Int, _ field: String) throws(ImageError) -> String {
    Text.ascii(try bytes(n, field))
  }
}

/// GUID/UUID rendering.
public enum GUID {
  static let digits = Array("0123456789abcdef".utf8)

  static func render(_ b: [UInt8]) -> String {
    var out = [UInt8]()
    out.reserveCapacity(36)
    for (i, v) in b.enumerated() {
      if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
      out.append(digits[Int(v >> 4)])
      out.append(digits[Int(v & 15)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  public static func bigEndian(_ s: ArraySlice<UInt8>) -> String { render(Array(s.prefix(16))) }

  public static func mixedEndian(_ s: ArraySlice<UInt8>) -> String {
    let b = Array(s.prefix(16))
    guard b.count == 16 else { return render(b) }
    return render([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + b[8..<16])
  }

  public static func isZero(_ s: ArraySlice<UInt8>) -> Bool { s.allSatisfy { $0 == 0 } }
}

/// Text helpers for fields inside images: never trust them to be UTF-8 or terminated.
public enum Text {
  /// Printable ASCII up to the first NUL; other bytes become `?`; trailing blanks trimmed.
  public static func ascii<S: Sequence>(_ s: S) -> String where S.Element == UInt8 {
    var out = [UInt8]()
    for b in s {
      if b == 0 { break }
      out.append(b >= 0x20 && b < 0x7f ? b : UInt8(ascii: "?"))
    }
    while let last = out.last, last == 0x20 { out.removeLast() }
    return String(decoding: out, as: UTF8.self)
  }

  /// UTF-8 when valid, with NULs stripped at the end; otherwise `ascii`.
  public static func utf8<S: Collection>(_ s: S) -> String where S.Element == UInt8 {
    var b = Array(s)
    if let z = b.firstIndex(of: 0) { b.removeSubrange(z...) }
    if let str = String(validating: b, as: UTF8.self) { return str }
    return ascii(b)
  }

  /// UTF-16LE text (VHD parent names, VHDX locators), up to the first NUL code unit.
  public static func utf16LE(_ s: ArraySlice<UInt8>) -> String {
    var units = [UInt16]()
    var i = s.startIndex
    while i + 1 < s.endIndex {
      let u = UInt16(s[i]) | UInt16(s[i + 1]) << 8
      if u == 0 { break }
      units.append(u)
      i += 2
    }
    return String(decoding: units, as: UTF16.self)
  }

  /// UTF-16BE text (VHD parent unicode name).
  public static func utf16BE(_ s: ArraySlice<UInt8>) -> String {
    var units = [UInt16]()
    var i = s.startIndex
    while i + 1 < s.endIndex {
      let u = UInt16(s[i]) << 8 | UInt16(s[i + 1])
      if u == 0 { break }
      units.append(u)
      i += 2
    }
    return String(decoding: units, as: UTF16.self)
  }
}
