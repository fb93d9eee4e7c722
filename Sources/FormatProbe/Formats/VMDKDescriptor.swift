/// The VMDK text descriptor (VMware Virtual Disk Format 1.1, section 4 "The Descriptor File"):
/// a header of `key=value` lines, extent lines, and the disk database (`ddb.*` keys).
///
/// ```
/// # Disk DescriptorFile
/// version=1
/// encoding="UTF-8"
/// CID=fffffffe
/// parentCID=ffffffff
/// createType="monolithicSparse"
/// # Extent description
/// RW 16777216 SPARSE "test1.vmdk"
/// # The Disk Data Base
/// ddb.adapterType = "ide"
/// ```
///
/// The parser is deliberately narrow, like the image service's allow-list: every line must be
/// blank, a comment (`#...`, which includes commented-out extents such as `#RW 8 FLAT "x" 0`),
/// `key=value` with a one-word key (`key = "v"` spacing is fine), or an extent line starting with
/// an access mode. Anything else is kept in `unknownLines` and becomes `vmdk.descriptor-line`.
/// File names are taken verbatim between the quotes: descriptors written on Windows hold device
/// paths such as `\\.\PhysicalDrive2`, and a backslash is never an escape.
public struct VMDKDescriptor: Sendable, Equatable {
  /// One extent line: `ACCESS SIZE TYPE ["FILENAME" [OFFSET]]`.
  public struct Extent: Sendable, Equatable {
    /// `RW`, `RDONLY` or `NOACCESS` (as written, upper-cased).
    public var access: String
    /// Size in 512-byte sectors.
    public var sectors: UInt64
    /// `SPARSE`, `FLAT`, `ZERO`, `VMFS`, `VMFSSPARSE`, `VMFSRDM`, `VMFSRAW`, `SESPARSE` (upper-cased).
    public var type: String
    /// The file name between the quotes, verbatim; nil for `ZERO` extents.
    public var filename: String?
    /// Start within the file in sectors (`FLAT`, `VMFS` ...), when given.
    public var offset: UInt64?
    /// Absolute byte offset of the line in the input.
    public var lineOffset: UInt64
    /// Access and type exactly as written (qemu compares them case-sensitively).
    public var accessAsWritten = ""
    public var typeAsWritten = ""
  }

  public var version: String?
  public var encoding: String?
  public var cid: UInt32?
  public var parentCID: UInt32?
  public var createType: String?
  public var isNativeSnapshot: String?
  public var parentFileNameHint: String?
  public var parentFileNameHintOffset: UInt64?
  /// `changeTrackPath`: the changed-block-tracking file (another file, never opened).
  public var changeTrackPath: String?
  public var extents: [Extent] = []
  /// `ddb.*` entries in file order, key without the `ddb.` prefix, value unquoted.
  public var ddb: [(String, String)] = []
  /// Other `key=value` header lines, in file order.
  public var otherKeys: [(String, String)] = []
  /// Lines that are none of the above: (absolute offset, text, why).
  public var unknownLines: [(UInt64, String, String)] = []
  /// Whether the first line is `# Disk DescriptorFile`.
  public var hasSignature = false
  /// Known header keys given more than once.
  public var duplicateKeys: [String] = []
  /// The same facts as qemu and the image service extract them (see `OtherReaders`).
  public var otherReaders = OtherReaders()

  /// qemu does not parse descriptor lines: it finds the first occurrence of `createType`,
  /// `parentFileNameHint`, `CID` and `parentCID` anywhere in the text (`strstr`, even inside a
  /// comment or another value), skips two characters (`="`) and reads up to the next quote
  /// (block/vmdk.c vmdk_parse_description, vmdk_read_cid). The image service looks for the first
  /// `createtype="` in the lower-cased text. Where their answer differs from the line-by-line
  /// parse, readers disagree about the disk.
  public struct OtherReaders: Sendable, Equatable {
    public var qemuCreateType: String?
    public var qemuParentHint: String?
    public var qemuCID: UInt32?
    public var qemuParentCID: UInt32?
    public var inspectorCreateType: String?
  }
  /// Lines read.
  public var lineCount = 0
  var seenKeys = Set<String>()
  /// Lines that are not empty (bounded by `Limits.maxLines`).
  public var contentLines = 0

  public enum Limits {
    /// qemu reads at most 1 MiB - 1 of descriptor (`vmdk_read_desc`, "avoid unbounded
    /// allocation"); the image service's inspector caps the embedded descriptor the same way.
    public static let maxBytes = (1 << 20) - 1
    /// Non-empty lines: real descriptors have 20-40; more than this is not a descriptor a tool
    /// wrote (1 MiB of one-character lines would otherwise be half a million extents or keys).
    public static let maxLines = 1 << 16
    /// Extents listed: VMware's twoGbMaxExtent* of the largest hosted disk (62 TiB) needs 31744.
    public static let maxExtents = 32768
    /// ddb entries kept in the report (VMware writes about 10).
    public static let maxDDB = 256
    /// Unknown lines kept for findings.
    public static let maxUnknown = 16
  }

  public init() {}

  public static func == (a: VMDKDescriptor, b: VMDKDescriptor) -> Bool {
    a.version == b.version && a.cid == b.cid && a.parentCID == b.parentCID && a.createType == b.createType
      && a.extents == b.extents && a.ddb.map { $0.0 + "=" + $0.1 } == b.ddb.map { $0.0 + "=" + $0.1 }
  }

  /// Looks up a ddb key (case-insensitive, without the `ddb.` prefix).
  public func ddb(_ key: String) -> String? {
    let k = key.lowercased()
    return ddb.first { $0.0.lowercased() == k }?.1
  }

  /// Sum of the extent sizes in bytes (nil on overflow).
  public var extentBytes: UInt64? {
    var total: UInt64 = 0
    for e in extents {
      let (b, o1) = e.sectors.multipliedReportingOverflow(by: 512)
      let (t, o2) = total.addingReportingOverflow(b)
      if o1 || o2 { return nil }
      total = t
    }
    return total
  }

  /// Whether `bytes` look like a descriptor: the signature comment, or (like qemu's probe) the
  /// first line that is neither blank nor a comment is `version=N`. Only text is accepted.
  public static func looksLikeDescriptor(_ bytes: ArraySlice<UInt8>) -> Bool {
    var i = bytes.startIndex
    // A UTF-8 byte-order mark is tolerated.
    if bytes.count >= 3, bytes[i] == 0xef, bytes[i + 1] == 0xbb, bytes[i + 2] == 0xbf { i += 3 }
    let sig = Array("# Disk DescriptorFile".utf8)
    if bytes.endIndex - i >= sig.count, bytes[i..<(i + sig.count)].elementsEqual(sig) { return true }
    while i < bytes.endIndex {
      let c = bytes[i]
      if c == UInt8(ascii: "#") {
        while i < bytes.endIndex, bytes[i] != 0x0a { i += 1 }
        continue
      }
      if c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d { i += 1; continue }
      let v = Array("version=".utf8)
      guard bytes.endIndex - i > v.count, bytes[i..<(i + v.count)].elementsEqual(v) else { return false }
      let d = bytes[i + v.count]
      return d >= UInt8(ascii: "1") && d <= UInt8(ascii: "9")
    }
    return false
  }

  /// Parses descriptor text. `base` is the absolute offset of `bytes` (for messages). Text stops
  /// at the first NUL (the embedded descriptor is NUL-padded).
  public static func parse(_ bytes: ArraySlice<UInt8>, base: UInt64, format: String = "vmdk") throws(ImageError)
    -> VMDKDescriptor
  {
    var d = VMDKDescriptor()
    let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
    var start = bytes.startIndex
    if end - start >= 3, bytes[start] == 0xef, bytes[start + 1] == 0xbb, bytes[start + 2] == 0xbf { start += 3 }
    var windows1252 = false
    var lineStart = start
    while lineStart < end {
      var lineEnd = lineStart
      while lineEnd < end, bytes[lineEnd] != 0x0a { lineEnd += 1 }
      let next = lineEnd < end ? lineEnd + 1 : end
      d.lineCount += 1
      if lineEnd > lineStart, !(lineEnd - lineStart == 1 && bytes[lineStart] == 0x0d) { d.contentLines += 1 }
      guard d.contentLines <= Limits.maxLines else {
        throw ImageError(.limitExceeded, format: format, field: "descriptor", offset: base,
                         "has more than \(Limits.maxLines) lines", finding: "vmdk.descriptor-too-large")
      }
      let lineOffset = base &+ UInt64(lineStart - bytes.startIndex)
      let text = decode(bytes[lineStart..<lineEnd], windows1252: windows1252)
      try d.take(line: vmdkTrim(text), offset: lineOffset, first: d.lineCount == 1, format: format)
      if d.encoding?.lowercased() == "windows-1252" { windows1252 = true }
      lineStart = next
    }
    d.otherReaders = otherReaders(Array(bytes[start..<end]))
    return d
  }

  static func find(_ hay: [UInt8], _ needle: [UInt8], caseInsensitive: Bool = false) -> Int? {
    guard needle.count <= hay.count else { return nil }
    let fold: (UInt8) -> UInt8 = { caseInsensitive && $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 }
    let first = fold(needle[0])
    var i = 0
    while i <= hay.count - needle.count {
      if fold(hay[i]) == first {
        var j = 1
        while j < needle.count, fold(hay[i + j]) == fold(needle[j]) { j += 1 }
        if j == needle.count { return i }
      }
      i += 1
    }
    return nil
  }

  /// qemu's vmdk_parse_description: skip the name and two characters, read up to a quote.
  static func qemuValue(_ text: [UInt8], _ key: String) -> String? {
    guard let at = find(text, Array(key.utf8)) else { return nil }
    let from = at + key.utf8.count + 2
    guard from < text.count, let close = text[from...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
    return String(decoding: text[from..<close], as: UTF8.self)
  }

  /// qemu's vmdk_read_cid: skip `CID=` (or `parentCID=`), then `%x`.
  static func qemuHex(_ text: [UInt8], _ key: String) -> UInt32? {
    guard let at = find(text, Array(key.utf8)) else { return nil }
    var i = at + key.utf8.count + 1
    while i < text.count, text[i] == 0x20 || text[i] == 0x09 { i += 1 }
    if i + 1 < text.count, text[i] == UInt8(ascii: "0"), text[i + 1] | 0x20 == UInt8(ascii: "x") { i += 2 }
    var v: UInt64 = 0
    var digits = 0
    while i < text.count, let d = hexDigit(text[i]) {
      v = (v << 4 | UInt64(d)) & 0xffff_ffff
      digits += 1
      i += 1
    }
    return digits > 0 ? UInt32(v) : nil
  }

  static func hexDigit(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
  }

  static func otherReaders(_ text: [UInt8]) -> OtherReaders {
    var o = OtherReaders()
    o.qemuCreateType = qemuValue(text, "createType")
    o.qemuParentHint = qemuValue(text, "parentFileNameHint")
    o.qemuCID = qemuHex(text, "CID")
    o.qemuParentCID = qemuHex(text, "parentCID")
    let key = Array("createtype=\"".utf8)
    if let at = find(text, key, caseInsensitive: true) {
      let from = at + key.count
      if let close = text[from...].firstIndex(of: UInt8(ascii: "\"")), close - from < 64 {
        o.inspectorCreateType = String(decoding: text[from..<close], as: UTF8.self).lowercased()
      }
    }
    return o
  }

  /// Where qemu or the image service read something else than the line-by-line parse.
  public var disagreements: [String] {
    var out: [String] = []
    let o = otherReaders
    if o.qemuCreateType != createType {
      out.append("qemu reads createType as \(o.qemuCreateType.map { "\"\($0)\"" } ?? "absent"), the descriptor's line says \(createType.map { "\"\($0)\"" } ?? "nothing")")
    }
    if o.inspectorCreateType != createType?.lowercased() {
      out.append("the image service reads createType as \(o.inspectorCreateType.map { "\"\($0)\"" } ?? "absent")")
    }
    if o.qemuParentHint != parentFileNameHint {
      out.append("qemu reads parentFileNameHint as \(o.qemuParentHint.map { "\"\($0)\"" } ?? "absent"), the descriptor's line says \(parentFileNameHint.map { "\"\($0)\"" } ?? "nothing")")
    }
    if let c = cid, o.qemuCID != c { out.append("qemu reads CID as \(o.qemuCID.map { String($0, radix: 16) } ?? "absent"), the line says \(String(c, radix: 16))") }
    if let p = parentCID, o.qemuParentCID != p {
      out.append("qemu reads parentCID as \(o.qemuParentCID.map { String($0, radix: 16) } ?? "absent"), the line says \(String(p, radix: 16))")
    }
    if !duplicateKeys.isEmpty { out.append("keys given more than once: \(duplicateKeys.joined(separator: ", "))") }
    return out
  }

  /// For descriptor files: qemu opens only extents whose access is exactly "RW" and refuses
  /// types not written in upper case (vmdk_parse_extents); VMware uses RDONLY extents too.
  public var extentDisagreements: [String] {
    var out: [String] = []
    for (i, e) in extents.enumerated().prefix(Limits.maxUnknown) {
      if e.accessAsWritten != "RW" {
        out.append("qemu ignores extent \(i + 1) (access \"\(e.accessAsWritten)\"), other readers use it")
      }
      if e.typeAsWritten != e.type { out.append("qemu refuses extent \(i + 1)'s type \"\(e.typeAsWritten)\" (not upper case)") }
    }
    return out
  }

  mutating func take(line: Substring, offset: UInt64, first: Bool, format: String) throws(ImageError) {
    if line.isEmpty { return }
    if line.hasPrefix("#") {
      if first, line.hasPrefix("# Disk DescriptorFile") { hasSignature = true }
      return
    }
    let firstWord = line.prefix { $0 != " " && $0 != "\t" }.uppercased()
    if firstWord == "RW" || firstWord == "RDONLY" || firstWord == "NOACCESS" {
      guard extents.count < Limits.maxExtents else {
        throw ImageError(.limitExceeded, format: format, field: "descriptor extents", offset: offset,
                         "lists more than \(Limits.maxExtents) extents", finding: "vmdk.descriptor-too-large")
      }
      if let e = VMDKDescriptor.extent(line, offset: offset) {
        extents.append(e)
      } else {
        unknown(offset, line, "is not a valid extent line (ACCESS SECTORS TYPE \"FILE\" [OFFSET])")
      }
      return
    }
    if let eq = line.firstIndex(of: "=") {
      let key = vmdkTrim(line[..<eq])
      let value = VMDKDescriptor.unquote(vmdkTrim(line[line.index(after: eq)...]))
      guard !key.isEmpty, !key.contains(" "), !key.contains("\t") else {
        unknown(offset, line, "has a key that is not one word")
        return
      }
      let lower = key.lowercased()
      if lower.hasPrefix("ddb.") {
        if ddb.count < Limits.maxDDB { ddb.append((String(key.dropFirst(4)), value)) }
        return
      }
      let known = ["version", "encoding", "cid", "parentcid", "createtype", "isnativesnapshot", "parentfilenamehint",
                   "changetrackpath"]
      if known.contains(lower) {
        guard !seenKeys.contains(lower) else {
          if duplicateKeys.count < Limits.maxUnknown { duplicateKeys.append(String(key)) }
          return  // the first occurrence wins, as in qemu
        }
        seenKeys.insert(lower)
      }
      switch lower {
      case "version": version = value
      case "encoding": encoding = value
      case "cid": cid = UInt32(value, radix: 16)
      case "parentcid": parentCID = UInt32(value, radix: 16)
      case "createtype": createType = value
      case "isnativesnapshot": isNativeSnapshot = value
      case "parentfilenamehint":
        parentFileNameHint = value
        parentFileNameHintOffset = offset
      case "changetrackpath": changeTrackPath = value
      default:
        if otherKeys.count < Limits.maxDDB { otherKeys.append((String(key), value)) }
      }
      return
    }
    unknown(offset, line, "is neither a comment, a key=value line nor an extent line")
  }

  mutating func unknown(_ offset: UInt64, _ line: Substring, _ why: String) {
    guard unknownLines.count < Limits.maxUnknown else { return }
    unknownLines.append((offset, String(line.prefix(120)), why))
  }

  /// `ACCESS SECTORS TYPE ["FILENAME" [OFFSET]]`; nil when it does not have that shape.
  static func extent(_ line: Substring, offset: UInt64) -> Extent? {
    var rest = line[...]
    func word() -> Substring {
      rest = rest.drop { $0 == " " || $0 == "\t" }
      let w = rest.prefix { $0 != " " && $0 != "\t" && $0 != "\"" }
      rest = rest.dropFirst(w.count)
      return w
    }
    let rawAccess = word()
    guard let sectors = UInt64(word()) else { return nil }
    let rawType = word()
    let access = rawAccess.uppercased(), type = rawType.uppercased()
    guard !type.isEmpty else { return nil }
    var e = Extent(access: access, sectors: sectors, type: type, filename: nil, offset: nil, lineOffset: offset)
    e.accessAsWritten = String(rawAccess)
    e.typeAsWritten = String(rawType)
    rest = rest.drop { $0 == " " || $0 == "\t" }
    if rest.isEmpty { return type == "ZERO" ? e : nil }
    guard rest.first == "\"" else { return nil }
    rest = rest.dropFirst()
    guard let close = rest.firstIndex(of: "\"") else { return nil }
    e.filename = String(rest[..<close])
    rest = rest[rest.index(after: close)...]
    let off = word()
    if !off.isEmpty {
      guard let o = UInt64(off) else { return nil }
      e.offset = o
    }
    guard vmdkTrim(rest).isEmpty else { return nil }
    return e
  }

  static func unquote(_ s: Substring) -> String {
    if s.count >= 2, s.first == "\"", s.last == "\"" { return String(s.dropFirst().dropLast()) }
    return String(s)
  }

  /// UTF-8 when valid (and not declared windows-1252); otherwise windows-1252, which maps every byte.
  static func decode(_ b: ArraySlice<UInt8>, windows1252: Bool) -> String {
    if !windows1252, let s = String(validating: b, as: UTF8.self) { return s }
    var scalars = String.UnicodeScalarView()
    for byte in b {
      let v: UInt32
      if byte >= 0x80 && byte < 0xa0 { v = UInt32(cp1252High[Int(byte - 0x80)]) } else { v = UInt32(byte) }
      scalars.append(Unicode.Scalar(v) ?? "?")
    }
    return String(scalars)
  }

  /// windows-1252 0x80...0x9f (undefined positions map to U+FFFD).
  static let cp1252High: [UInt16] = [
    0x20ac, 0xfffd, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0xfffd,
    0x017d, 0xfffd, 0xfffd, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a,
    0x0153, 0xfffd, 0x017e, 0x0178,
  ]
}

@inline(__always) func vmdkTrim<S: StringProtocol>(_ s: S) -> Substring {
  let sub = Substring(s)
  let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
  guard let first = sub.firstIndex(where: { !isBlank($0) }), let last = sub.lastIndex(where: { !isBlank($0) }) else {
    return sub[sub.endIndex...]
  }
  return sub[first...last]
}
