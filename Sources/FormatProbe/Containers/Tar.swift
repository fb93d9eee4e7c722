/// A bounded walker over POSIX tar headers (ustar, GNU long names, pax extended headers).
/// It seeks from header to header using the member sizes and never reads member data, except the
/// small GNU long-name and pax records that describe the next member.
///
/// Header block (512 bytes; POSIX.1-1988 ustar, IEEE Std 1003.1-2017 "pax" format):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 100 | name |
/// | 100 | 8 | mode (octal) |
/// | 108 | 8 | uid |
/// | 116 | 8 | gid |
/// | 124 | 12 | size (octal, or GNU base-256 when the first byte has bit 7 set) |
/// | 136 | 12 | mtime |
/// | 148 | 8 | chksum (octal sum of the header bytes with this field read as spaces) |
/// | 156 | 1 | typeflag |
/// | 157 | 100 | linkname |
/// | 257 | 6 | magic ("ustar\0"; GNU writes "ustar " then version " \0") |
/// | 263 | 2 | version ("00") |
/// | 265 | 32 | uname |
/// | 297 | 32 | gname |
/// | 329 | 8 | devmajor |
/// | 337 | 8 | devminor |
/// | 345 | 155 | prefix (ustar only; GNU keeps other fields here) |
///
/// The archive ends with two zero blocks.
public struct TarMember: Sendable, Equatable {
  public var name: String
  public var typeflag: UInt8
  /// Offset of the member's first header block (long-name and pax headers included).
  public var headerOffset: UInt64
  /// Offset of the member's data.
  public var dataOffset: UInt64
  public var size: UInt64
  public var linkName: String?
  /// GNU sparse member ('S', `tar -S`): the file's real length and its data segments
  /// (offset in the file, length), stored back to back from `dataOffset`; holes read as zeros.
  public var realSize: UInt64?
  public var sparseMap: [SparseSegment]?

  public struct SparseSegment: Sendable, Equatable {
    public var offset: UInt64
    public var length: UInt64
  }

  /// Regular file data: plain, contiguous, or GNU sparse.
  public var isRegular: Bool { typeflag == 0x30 || typeflag == 0 || typeflag == 0x37 || typeflag == 0x53 }
  public var isLink: Bool { typeflag == 0x31 || typeflag == 0x32 }
  public var isSpecial: Bool { typeflag == 0x33 || typeflag == 0x34 || typeflag == 0x36 }

  public var typeName: String {
    switch typeflag {
    case 0, 0x30: return "file"
    case 0x31: return "hardlink"
    case 0x32: return "symlink"
    case 0x33: return "char-device"
    case 0x34: return "block-device"
    case 0x35: return "directory"
    case 0x36: return "fifo"
    case 0x37: return "contiguous"
    case 0x53: return "gnu-sparse"
    case 0x56: return "volume-label"
    default: return "type-\(Text.ascii([typeflag]))"
    }
  }

  /// The name with a leading "./" removed (how `tar -C dir .` writes names).
  public var normalizedName: String { Tar.normalize(name) }
}

public struct TarListing: Sendable {
  public var members: [TarMember] = []
  /// Where the walk stopped: the end-of-archive marker, the end of the input, or the error.
  public var endOffset: UInt64 = 0
  /// Two zero blocks were found.
  public var sawEndMarker = false
  /// GNU (`ustar  `) rather than POSIX (`ustar\0` + `00`) magic on the first header.
  public var gnu = false
  public var sawPax = false
  /// The first problem after the first header (the walk stops there).
  public var error: ImageError?
}

public enum Tar {
  public enum Limits {
    /// Members listed. An OVA holds a descriptor, a manifest, a certificate and a few disks;
    /// 10000 bounds the walk over a hostile archive of tiny members (each costs one 512-byte read).
    public static let maxMembers = 10_000
    /// Longest member or link name: Linux PATH_MAX (4096).
    public static let maxName = 4096
    /// pax extended header data read per member; real ones hold a few records (path, size, times).
    public static let maxPax = 1 << 20
    /// pax records parsed from one header.
    public static let maxPaxRecords = 1024
    /// GNU sparse map entries of one member: 21 per 512-byte extension block; 65536 entries
    /// (3121 blocks, 1.5 MiB of headers) covers a disk with tens of thousands of holes.
    public static let maxSparseSegments = 65_536
  }

  static let ustarMagic: [UInt8] = [0x75, 0x73, 0x74, 0x61, 0x72]  // "ustar"

  /// Whether `b` (at least 512 bytes) is a ustar/GNU header with a valid checksum.
  public static func isHeader(_ b: ArraySlice<UInt8>) -> Bool {
    guard b.count >= 512 else { return false }
    let s = b.startIndex
    guard Array(b[(s + 257)..<(s + 262)]) == ustarMagic else { return false }
    guard let stored = try? octal(b[(s + 148)..<(s + 156)], "chksum", at: 148) else { return false }
    return checksums(b).contains(stored)
  }

  /// Unsigned and signed header sums with the chksum field counted as spaces (old tars used signed).
  static func checksums(_ b: ArraySlice<UInt8>) -> [UInt64] {
    var u: UInt64 = 0
    var sgn: Int64 = 0
    let s = b.startIndex
    for i in 0..<512 {
      let v = (i >= 148 && i < 156) ? UInt8(0x20) : b[s + i]
      u += UInt64(v)
      sgn += Int64(Int8(bitPattern: v))
    }
    return sgn >= 0 ? [u, UInt64(sgn)] : [u]
  }

  /// An octal numeric field: optional leading blanks, digits, then NUL or blank.
  static func octal(_ f: ArraySlice<UInt8>, _ field: String, at offset: UInt64, format: String = "tar") throws(ImageError) -> UInt64 {
    var v: UInt64 = 0
    var i = f.startIndex
    while i < f.endIndex, f[i] == 0x20 { i += 1 }
    var digits = 0
    while i < f.endIndex, f[i] >= 0x30, f[i] <= 0x37 {
      guard v <= UInt64.max >> 3 else {
        throw ImageError(.invalidField, format: format, field: field, offset: offset, "overflows 64 bits")
      }
      v = v << 3 | UInt64(f[i] - 0x30)
      i += 1
      digits += 1
    }
    while i < f.endIndex {
      guard f[i] == 0 || f[i] == 0x20 else {
        throw ImageError(.invalidField, format: format, field: field, offset: offset + UInt64(i - f.startIndex),
                         "holds \(hex(f[i])), not an octal digit")
      }
      i += 1
    }
    return v
  }

  /// A numeric field: octal, or GNU base-256 (first byte 0x80, the rest big-endian).
  static func number(_ f: ArraySlice<UInt8>, _ field: String, at offset: UInt64, format: String) throws(ImageError) -> UInt64 {
    guard let first = f.first, first & 0x80 != 0 else { return try octal(f, field, at: offset, format: format) }
    guard first == 0x80 else {
      throw ImageError(.invalidField, format: format, field: field, offset: offset,
                       "is a negative or malformed base-256 number (\(hex(first)))")
    }
    var v: UInt64 = 0
    for b in f.dropFirst() {
      guard v <= UInt64.max >> 8 else {
        throw ImageError(.invalidField, format: format, field: field, offset: offset, "base-256 value overflows 64 bits")
      }
      v = v << 8 | UInt64(b)
    }
    return v
  }

  public static func normalize(_ name: String) -> String {
    var n = Substring(name)
    while n.hasPrefix("./") { n = n.dropFirst(2) }
    return String(n)
  }

  /// A name an extractor would write outside its directory: absolute, a drive letter, or with
  /// a `..` component (either separator).
  public static func escapesDirectory(_ name: String) -> Bool {
    if name.hasPrefix("/") || name.hasPrefix("\\") { return true }
    let u = Array(name.utf8)
    if u.count >= 2, u[1] == UInt8(ascii: ":"), (u[0] | 0x20) >= 0x61, (u[0] | 0x20) <= 0x7a { return true }
    return name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).contains("..")
  }

  static func nameField(_ b: ArraySlice<UInt8>) -> String { Text.utf8(b) }

  /// pax records: "LEN KEY=VALUE\n", LEN counting the whole record.
  static func paxRecords(_ data: [UInt8], at offset: UInt64, format: String) throws(ImageError) -> [String: String] {
    var out: [String: String] = [:]
    var p = 0
    var count = 0
    while p < data.count {
      if data[p] == 0 { break }  // NUL padding
      count += 1
      guard count <= Limits.maxPaxRecords else {
        throw ImageError(.limitExceeded, format: format, field: "pax records", offset: offset, "more than \(Limits.maxPaxRecords)")
      }
      var q = p
      var len = 0
      while q < data.count, data[q] >= 0x30, data[q] <= 0x39, q - p < 8 {
        len = len * 10 + Int(data[q] - 0x30)
        q += 1
      }
      guard q < data.count, data[q] == 0x20, len > q - p + 1, len <= data.count - p, data[p + len - 1] == 0x0a else {
        throw ImageError(.invalidField, format: format, field: "pax record", offset: offset + UInt64(p), "is malformed")
      }
      let body = data[(q + 1)..<(p + len - 1)]
      guard let eq = body.firstIndex(of: UInt8(ascii: "=")) else {
        throw ImageError(.invalidField, format: format, field: "pax record", offset: offset + UInt64(p), "has no '='")
      }
      out[Text.utf8(body[body.startIndex..<eq])] = String(decoding: body[(eq + 1)...], as: UTF8.self)
      p += len
    }
    return out
  }

  /// Walks every header. Throws only when the first header is broken (then this is not a usable
  /// tar); later problems stop the walk and are returned in `error`.
  public static func walk(_ source: ByteSource, format: String = "tar") throws(ImageError) -> TarListing {
    var listing = TarListing()
    var off: UInt64 = 0
    var longName: String?
    var longLink: String?
    var pax: [String: String] = [:]
    var global: [String: String] = [:]
    var memberStart: UInt64?
    var first = true
    do throws(ImageError) {
      while true {
        let block = try source.read(at: off, count: 512)
        if block.isEmpty { break }  // end of input without the end-of-archive marker
        guard block.count == 512 else {
          throw ImageError.truncated(format, "header", at: off, need: 512, have: UInt64(block.count))
        }
        if block.allSatisfy({ $0 == 0 }) {
          let next = try source.read(at: off + 512, count: 512)
          listing.sawEndMarker = next.count == 512 && next.allSatisfy { $0 == 0 }
          break
        }
        let b = block[...]
        guard Array(b[257..<262]) == ustarMagic else {
          throw ImageError(.invalidField, format: format, field: "magic", offset: off + 257,
                           "is not 'ustar' (not a tar header)", finding: "ova.tar-checksum")
        }
        let stored = try octal(b[148..<156], "chksum", at: off + 148, format: format)
        let sums = checksums(b)
        guard sums.contains(stored) else {
          throw ImageError(.invalidField, format: format, field: "chksum", offset: off + 148,
                           "is \(stored) (octal \(String(stored, radix: 8))), computed \(sums[0]) (octal \(String(sums[0], radix: 8)))",
                           finding: "ova.tar-checksum")
        }
        if first {
          listing.gnu = b[262] == 0x20
          first = false
        }
        let type = b[156]
        var size = try number(b[124..<136], "size", at: off + 124, format: format)
        if type != 0x78 && type != 0x67, let s = pax["size"] ?? global["size"] {
          // Digits only, like GNU tar (decode_num): Swift's UInt64("+5") would accept a sign that
          // tar rejects, and the two would then disagree where the next header is.
          guard s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = UInt64(s) else {
            throw ImageError(.invalidField, format: format, field: "pax size", offset: off, "'\(s)' is not a decimal size")
          }
          size = v
        }
        var data = off + 512
        var sparse: [TarMember.SparseSegment]?
        var realSize: UInt64?
        if type == 0x53 {
          // Old GNU sparse header: 4 map entries at 386 (offset 12, numbytes 12), isextended at 482,
          // realsize at 483; extension blocks of 21 entries with isextended at 504 follow the header.
          var map: [TarMember.SparseSegment] = []
          func entries(_ blk: ArraySlice<UInt8>, at: Int, count: Int, base: UInt64) throws(ImageError) {
            for k in 0..<count {
              let e = blk.startIndex + at + 24 * k
              let o = try number(blk[e..<(e + 12)], "sparse offset", at: base + UInt64(at + 24 * k), format: format)
              let n = try number(blk[(e + 12)..<(e + 24)], "sparse numbytes", at: base + UInt64(at + 24 * k + 12), format: format)
              if o == 0 && n == 0 && blk[e] == 0 { return }
              guard map.count < Limits.maxSparseSegments else {
                throw ImageError(.limitExceeded, format: format, field: "sparse map", offset: base,
                                 "has more than \(Limits.maxSparseSegments) segments")
              }
              map.append(TarMember.SparseSegment(offset: o, length: n))
            }
          }
          try entries(b, at: 386, count: 4, base: off)
          realSize = try number(b[483..<495], "realsize", at: off + 483, format: format)
          var extended = b[482] != 0
          while extended {
            let ext = try source.readExactly(at: data, count: 512, format: format, field: "sparse extension header")
            try entries(ext[...], at: 0, count: 21, base: data)
            extended = ext[504] != 0
            data += 512
          }
          var stored: UInt64 = 0
          var previousEnd: UInt64 = 0
          for seg in map {
            let (end, o1) = seg.offset.addingReportingOverflow(seg.length)
            guard !o1, end <= (realSize ?? 0) else {
              throw ImageError(.invalidField, format: format, field: "sparse map", offset: off + 386,
                               "segment at \(seg.offset) of \(seg.length) bytes ends beyond the real size \(realSize ?? 0)")
            }
            // tar -S writes segments in file order without overlap; overlapping ones would give
            // bytes that depend on which segment a reader applies last.
            guard seg.offset >= previousEnd else {
              throw ImageError(.invalidField, format: format, field: "sparse map", offset: off + 386,
                               "segment at \(seg.offset) of \(seg.length) bytes starts before the previous segment's end \(previousEnd)")
            }
            previousEnd = end
            stored = try Checked.add(stored, seg.length, format, "sparse map", at: off + 386)
          }
          guard stored <= size else {
            throw ImageError(.invalidField, format: format, field: "sparse map", offset: off + 386,
                             "segments hold \(stored) bytes, the member stores \(size)")
          }
          sparse = map
        }
        guard data <= source.size, size <= source.size - data else {
          throw ImageError(.truncated, format: format, field: "member size", offset: off + 124,
                           "is \(size) bytes, but only \(source.size &- min(data, source.size)) bytes follow the header",
                           finding: "ova.member-truncated")
        }
        let next = try Checked.add(data, (size + 511) & ~511, format, "size", at: off + 124)
        if memberStart == nil { memberStart = off }
        switch type {
        case 0x4c, 0x4b:  // GNU 'L' long name, 'K' long link name
          guard size <= UInt64(Limits.maxName + 1) else {
            throw ImageError(.limitExceeded, format: format, field: "GNU long name", offset: off + 124,
                             "is \(size) bytes, limit \(Limits.maxName)")
          }
          let n = Text.utf8(try source.readExactly(at: data, count: Int(size), format: format, field: "GNU long name"))
          if type == 0x4c { longName = n } else { longLink = n }
        case 0x78, 0x67:  // pax 'x' (next member), 'g' (global)
          guard size <= UInt64(Limits.maxPax) else {
            throw ImageError(.limitExceeded, format: format, field: "pax header", offset: off + 124,
                             "is \(size) bytes, limit \(Limits.maxPax)")
          }
          listing.sawPax = true
          let recs = try paxRecords(try source.readExactly(at: data, count: Int(size), format: format, field: "pax header"),
                                    at: data, format: format)
          if type == 0x78 { pax.merge(recs) { $1 } } else { global.merge(recs) { $1 } }
        default:
          guard listing.members.count < Limits.maxMembers else {
            throw ImageError(.limitExceeded, format: format, field: "members", offset: off,
                             "more than \(Limits.maxMembers) members")
          }
          var name = nameField(b[0..<100])
          let posix = b[257..<263].elementsEqual([0x75, 0x73, 0x74, 0x61, 0x72, 0x00])
          if posix, b[345] != 0 { name = nameField(b[345..<500]) + "/" + name }
          if let n = longName { name = n }
          if let n = pax["path"] ?? global["path"] { name = n }
          guard name.utf8.count <= Limits.maxName else {
            throw ImageError(.limitExceeded, format: format, field: "name", offset: off, "is longer than \(Limits.maxName) bytes")
          }
          var link: String? = b[157] == 0 ? nil : nameField(b[157..<257])
          if let l = longLink { link = l }
          if let l = pax["linkpath"] ?? global["linkpath"] { link = l }
          listing.members.append(TarMember(name: name, typeflag: type, headerOffset: memberStart ?? off, dataOffset: data,
                                           size: size, linkName: (type == 0x31 || type == 0x32) ? link : nil,
                                           realSize: realSize, sparseMap: sparse))
          longName = nil
          longLink = nil
          pax = [:]
          memberStart = nil
        }
        off = next
      }
    } catch {
      if first { throw error }
      listing.error = error
    }
    listing.endOffset = off
    return listing
  }
}

/// A GNU sparse tar member seen as the file it stands for: segments read from the archive, holes
/// as zeros.
public final class SparseMemberSource: ByteSource, @unchecked Sendable {
  public let parent: ByteSource
  public let name: String
  public let size: UInt64
  public var allocatedSize: UInt64? { nil }
  public var isSeekable: Bool { parent.isSeekable }
  /// (file offset, length, archive offset), sorted by file offset.
  let segments: [(UInt64, UInt64, UInt64)]

  public init(_ parent: ByteSource, member m: TarMember) {
    self.parent = parent
    self.name = m.name
    self.size = m.realSize ?? m.size
    var at = m.dataOffset
    var segs: [(UInt64, UInt64, UInt64)] = []
    for s in m.sparseMap ?? [] where s.length > 0 {
      segs.append((s.offset, s.length, at))
      at &+= s.length
    }
    segments = segs.sorted { $0.0 < $1.0 }
  }

  public func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8] {
    guard count > 0, offset < size else { return [] }
    let n = Int(min(UInt64(min(count, maxRead)), size - offset))
    var out = [UInt8](repeating: 0, count: n)
    let end = offset + UInt64(n)
    // First segment that may overlap: binary search on the end of each segment.
    var lo = 0
    var hi = segments.count
    while lo < hi {
      let mid = (lo + hi) / 2
      if segments[mid].0 + segments[mid].1 <= offset { lo = mid + 1 } else { hi = mid }
    }
    var i = lo
    while i < segments.count, segments[i].0 < end {
      let (so, sl, sa) = segments[i]
      let from = max(so, offset)
      let to = min(so + sl, end)
      if from < to {
        let piece = try parent.read(at: sa + (from - so), count: Int(to - from))
        let at = Int(from - offset)
        out.replaceSubrange(at..<(at + piece.count), with: piece)
      }
      i += 1
    }
    return out
  }
}
