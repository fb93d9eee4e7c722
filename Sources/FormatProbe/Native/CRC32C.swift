/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by VHDX headers, region tables,
/// log entries (MS-VHDX 2.2) and by other formats (ext4 metadata_csum, btrfs, iSCSI).
///
/// Pure Swift, slicing-by-8: eight 256-entry tables built once, eight input bytes per step.
/// `CRC32C.checksum([0x31...0x39])` ("123456789") is 0xE3069283, the standard check value.
public enum CRC32C {
  /// The reflected Castagnoli polynomial.
  public static let polynomial: UInt32 = 0x82F6_3B78

  /// `tables[k][b]`: CRC of byte `b` followed by `k` zero bytes. Flat array of 8 x 256 entries.
  static let tables: [UInt32] = {
    var t = [UInt32](repeating: 0, count: 8 * 256)
    for b in 0..<256 {
      var c = UInt32(b)
      for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ polynomial : c >> 1 }
      t[b] = c
    }
    for k in 1..<8 {
      for b in 0..<256 {
        let prev = t[(k - 1) * 256 + b]
        t[k * 256 + b] = (prev >> 8) ^ t[Int(prev & 0xff)]
      }
    }
    return t
  }()

  /// Continues a CRC over `buffer`. Start with `crc = 0` (the pre- and post-inversion are inside),
  /// and feed the previous result to continue over several pieces.
  public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
    var c = ~crc
    var i = 0
    let n = buffer.count
    tables.withUnsafeBufferPointer { t in
      while n - i >= 8 {
        let lo = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ c
        let hi = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
        c = t[7 * 256 + Int(lo & 0xff)] ^ t[6 * 256 + Int((lo >> 8) & 0xff)]
          ^ t[5 * 256 + Int((lo >> 16) & 0xff)] ^ t[4 * 256 + Int(lo >> 24)]
          ^ t[3 * 256 + Int(hi & 0xff)] ^ t[2 * 256 + Int((hi >> 8) & 0xff)]
          ^ t[1 * 256 + Int((hi >> 16) & 0xff)] ^ t[Int(hi >> 24)]
        i += 8
      }
      while i < n {
        c = (c >> 8) ^ t[Int((c ^ UInt32(buffer[i])) & 0xff)]
        i += 1
      }
    }
    return ~c
  }

  /// CRC-32C of a byte collection (contiguous or not).
  public static func checksum<C: Collection>(_ bytes: C, seed: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
    if let r = bytes.withContiguousStorageIfAvailable({ update(seed, UnsafeRawBufferPointer($0)) }) { return r }
    return Array(bytes).withUnsafeBytes { update(seed, $0) }
  }

  /// CRC-32C of `bytes` with the 4-byte little-endian checksum field at `fieldOffset` taken as
  /// zero, the way VHDX headers, region tables and log entries are checksummed.
  public static func checksum(_ bytes: ArraySlice<UInt8>, zeroingFieldAt fieldOffset: Int) -> UInt32 {
    let start = bytes.startIndex
    guard fieldOffset >= 0, fieldOffset <= bytes.count - 4 else { return checksum(bytes) }
    let a = checksum(bytes[start..<(start + fieldOffset)])
    let b = checksum([0, 0, 0, 0] as [UInt8], seed: a)
    return checksum(bytes[(start + fieldOffset + 4)...], seed: b)
  }
}
