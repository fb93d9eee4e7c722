/// The OVF descriptor (DMTF DSP0243 1.x/2.x, and the pre-DMTF 0.9 dialect VMware and oVirt write),
/// read with a small bounded XML scanner of imgtool's own: no DTD processing, no entity
/// expansion beyond XML's five predefined entities and character references, capped size, depth,
/// element and attribute counts.

/// One element of a parsed document (an arena: children are indices into `XMLDocument.nodes`).
public struct XMLNode: Sendable {
  public var local: String
  public var prefix: String?
  public var namespace: String?
  public var attributes: [XMLAttribute]
  public var children: [Int] = []
  public var text = ""
  public var offset: UInt64

  /// The attribute with this local name (any prefix).
  public func attr(_ name: String) -> String? {
    attributes.first { $0.local == name }?.value
  }
}

public struct XMLAttribute: Sendable {
  public var prefix: String?
  public var local: String
  public var value: String
}

public struct XMLDocument: Sendable {
  public var nodes: [XMLNode] = []
  public var root = 0
  /// A `<!DOCTYPE` was present (skipped, never processed).
  public var doctypeOffset: UInt64?
  /// The XML declaration's `encoding`, as written.
  public var declaredEncoding: String?
  /// Entity references left unexpanded (not one of the five predefined ones).
  public var unexpandedEntities = 0

  public func children(_ i: Int) -> [Int] { nodes[i].children }
}

public enum XML {
  public enum Limits {
    /// Element nesting: OVF descriptors nest about 8 deep (Envelope/VirtualSystemCollection/.../Item/rasd:X);
    /// 64 leaves room for nested collections and bounds the parser's stack.
    public static let maxDepth = 64
    /// Elements: the largest real descriptor in the samples (142 KB) has ~3000; 200000 bounds a
    /// 4 MiB file of empty elements.
    public static let maxElements = 200_000
    /// Attributes on one element: OVF elements carry under 20; the Envelope's namespace
    /// declarations are the most.
    public static let maxAttributes = 256
    /// Name length (element, attribute, prefix).
    public static let maxName = 1024
    /// Text kept per element (property values in real appliances reach ~22000 characters).
    public static let maxText = 1 << 20
  }

  struct Parser {
    let b: [UInt8]
    let base: UInt64
    let format: String
    var i = 0
    var doc = XMLDocument()
    var stack: [Int] = []
    var scopes: [[(String, String)]] = []
    var rootSeen = false

    func fail(_ what: String, at p: Int? = nil, kind: ImageError.Kind = .invalidField) -> ImageError {
      ImageError(kind, format: format, field: "xml", offset: base + UInt64(p ?? i), what)
    }

    func starts(_ s: String, at p: Int) -> Bool {
      let u = Array(s.utf8)
      guard p + u.count <= b.count else { return false }
      for k in 0..<u.count where b[p + k] != u[k] { return false }
      return true
    }

    /// Index just after the next `end` from `p`, or an error naming what was left open.
    func find(_ end: String, from p: Int, _ what: String) throws(ImageError) -> Int {
      let u = Array(end.utf8)
      var q = p
      while q + u.count <= b.count {
        if b[q] == u[0] {
          var ok = true
          for k in 1..<u.count where b[q + k] != u[k] { ok = false; break }
          if ok { return q + u.count }
        }
        q += 1
      }
      throw fail("\(what) is not terminated", at: p)
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d }
    static func isNameEnd(_ c: UInt8) -> Bool {
      isSpace(c) || c == UInt8(ascii: "/") || c == UInt8(ascii: ">") || c == UInt8(ascii: "=") || c == UInt8(ascii: "<")
        || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'")
    }

    mutating func skipSpace() { while i < b.count, Parser.isSpace(b[i]) { i += 1 } }

    mutating func name() throws(ImageError) -> String {
      let s = i
      while i < b.count, !Parser.isNameEnd(b[i]) {
        i += 1
        guard i - s <= Limits.maxName else { throw fail("name is longer than \(Limits.maxName) bytes", at: s, kind: .limitExceeded) }
      }
      guard i > s else { throw fail(i < b.count ? "expected a name, found \(hex(b[i]))" : "ends where a name was expected", at: s) }
      return Text.utf8(b[s..<i])
    }

    /// Text with the five predefined entities and character references replaced; any other
    /// entity reference is kept as written (never expanded).
    mutating func decode(_ s: ArraySlice<UInt8>) throws(ImageError) -> String {
      guard s.contains(UInt8(ascii: "&")) else { return Text.utf8(s) }
      var out = [UInt8]()
      out.reserveCapacity(s.count)
      var p = s.startIndex
      while p < s.endIndex {
        let c = s[p]
        guard c == UInt8(ascii: "&") else { out.append(c); p += 1; continue }
        var q = p + 1
        while q < s.endIndex, q - p < 34, s[q] != UInt8(ascii: ";") { q += 1 }
        guard q < s.endIndex, s[q] == UInt8(ascii: ";") else { out.append(c); p += 1; continue }
        let ent = Array(s[(p + 1)..<q])
        var rep: [UInt8]?
        switch String(decoding: ent, as: UTF8.self) {
        case "lt": rep = [0x3c]
        case "gt": rep = [0x3e]
        case "amp": rep = [0x26]
        case "quot": rep = [0x22]
        case "apos": rep = [0x27]
        default:
          if ent.first == UInt8(ascii: "#") {
            let hexForm = ent.count > 1 && (ent[1] | 0x20) == UInt8(ascii: "x")
            let digits = String(decoding: ent.dropFirst(hexForm ? 2 : 1), as: UTF8.self)
            // XML 1.0 4.1: a character reference must name a legal Char (not NUL, not a
            // surrogate, at most U+10FFFF). Readers that replace or truncate at a bad one see
            // different names (a NUL cuts "disk.vmdk&#0;../x" in C), so the document is malformed.
            guard let v = UInt32(digits, radix: hexForm ? 16 : 10), v == 0x9 || v == 0xA || v == 0xD || v >= 0x20,
                  v != 0xFFFE, v != 0xFFFF, let u = Unicode.Scalar(v)
            else {
              throw fail("character reference &\(String(decoding: ent, as: UTF8.self)); is not a legal XML character",
                         at: p - b.startIndex)
            }
            rep = Array(String(Character(u)).utf8)
          }
        }
        if let rep {
          out.append(contentsOf: rep)
        } else {
          doc.unexpandedEntities += 1
          out.append(contentsOf: s[p...q])
        }
        p = q + 1
      }
      return Text.utf8(out)
    }

    func resolve(_ prefix: String?) -> String? {
      let key = prefix ?? ""
      for scope in scopes.reversed() {
        if let hit = scope.last(where: { $0.0 == key }) { return hit.1.isEmpty ? nil : hit.1 }
      }
      if prefix == "xml" { return "http://www.w3.org/XML/1998/namespace" }
      return nil
    }

    static func split(_ q: String) -> (String?, String) {
      guard let c = q.firstIndex(of: ":") else { return (nil, q) }
      return (String(q[..<c]), String(q[q.index(after: c)...]))
    }

    mutating func appendText(_ t: String) {
      guard let top = stack.last, !t.isEmpty else { return }
      if doc.nodes[top].text.utf8.count < Limits.maxText { doc.nodes[top].text += t }
    }

    mutating func parse() throws(ImageError) -> XMLDocument {
      while i < b.count {
        let c = b[i]
        if c != UInt8(ascii: "<") {
          let s = i
          while i < b.count, b[i] != UInt8(ascii: "<") { i += 1 }
          if stack.isEmpty {
            guard b[s..<i].allSatisfy({ Parser.isSpace($0) || $0 == 0 }) else {
              throw fail(rootSeen ? "has text after the root element" : "has text before the root element", at: s)
            }
          } else {
            let t = try decode(b[s..<i])
            appendText(t)
          }
          continue
        }
        if starts("<?", at: i) {
          let s = i
          let e = try find("?>", from: i + 2, "processing instruction")
          if starts("<?xml", at: s), doc.declaredEncoding == nil {
            let decl = String(decoding: b[s..<e], as: UTF8.self)
            if let r = decl.suffix(after: "encoding=") {
              let v = r.dropFirst()
              doc.declaredEncoding = String(v.prefix { $0 != "\"" && $0 != "'" })
            }
          }
          i = e
        } else if starts("<!--", at: i) {
          i = try find("-->", from: i + 4, "comment")
        } else if starts("<![CDATA[", at: i) {
          let s = i + 9
          let e = try find("]]>", from: s, "CDATA section")
          guard !stack.isEmpty else { throw fail("has a CDATA section outside the root element") }
          appendText(Text.utf8(b[s..<(e - 3)]))
          i = e
        } else if starts("<!DOCTYPE", at: i) || starts("<!doctype", at: i) {
          // Recorded and skipped: the internal subset (entity declarations) is never processed.
          if doc.doctypeOffset == nil { doc.doctypeOffset = base + UInt64(i) }
          let s = i
          var depth = 0
          var quote: UInt8 = 0
          i += 9
          while true {
            guard i < b.count else { throw fail("DOCTYPE is not terminated", at: s) }
            let d = b[i]
            i += 1
            if quote != 0 { if d == quote { quote = 0 }; continue }
            if d == 0x22 || d == 0x27 { quote = d }
            else if d == UInt8(ascii: "[") { depth += 1 }
            else if d == UInt8(ascii: "]") { depth -= 1 }
            else if d == UInt8(ascii: ">"), depth <= 0 { break }
          }
        } else if starts("</", at: i) {
          let s = i
          i += 2
          let n = try name()
          skipSpace()
          guard i < b.count, b[i] == UInt8(ascii: ">") else { throw fail("end tag </\(n)> is not terminated", at: s) }
          i += 1
          guard let top = stack.last else { throw fail("end tag </\(n)> has no start tag", at: s) }
          let (p, l) = Parser.split(n)
          guard doc.nodes[top].local == l, doc.nodes[top].prefix == p else {
            throw fail("end tag </\(n)> does not close <\(doc.nodes[top].prefix.map { $0 + ":" } ?? "")\(doc.nodes[top].local)>", at: s)
          }
          stack.removeLast()
          scopes.removeLast()
        } else if starts("<!", at: i) {
          throw fail("has an unsupported markup declaration outside a DOCTYPE")
        } else {
          let s = i
          i += 1
          let qname = try name()
          var attrs: [XMLAttribute] = []
          var scope: [(String, String)] = []
          var selfClosing = false
          while true {
            skipSpace()
            guard i < b.count else { throw fail("start tag <\(qname)> is not terminated", at: s) }
            if b[i] == UInt8(ascii: ">") { i += 1; break }
            if starts("/>", at: i) { i += 2; selfClosing = true; break }
            let an = try name()
            skipSpace()
            guard i < b.count, b[i] == UInt8(ascii: "=") else { throw fail("attribute \(an) has no value", at: i) }
            i += 1
            skipSpace()
            guard i < b.count, b[i] == 0x22 || b[i] == 0x27 else { throw fail("attribute \(an) value is not quoted", at: i) }
            let q = b[i]
            let vs = i + 1
            var e = vs
            while e < b.count, b[e] != q {
              guard b[e] != UInt8(ascii: "<") else { throw fail("attribute \(an) value contains '<'", at: e) }
              e += 1
            }
            guard e < b.count else { throw fail("attribute \(an) value is not terminated", at: vs) }
            let value = try decode(b[vs..<e])
            i = e + 1
            guard attrs.count < Limits.maxAttributes else {
              throw fail("element <\(qname)> has more than \(Limits.maxAttributes) attributes", at: s, kind: .limitExceeded)
            }
            let (ap, al) = Parser.split(an)
            // XML 1.0 3.1: an attribute appears at most once per tag; parsers that accept a
            // duplicate keep the first or the last, so two readers would see different values.
            guard !attrs.contains(where: { $0.prefix == ap && $0.local == al }) else {
              throw fail("element <\(qname)> has attribute \(an) twice", at: s)
            }
            if an == "xmlns" { scope.append(("", value)) } else if ap == "xmlns" { scope.append((al, value)) }
            attrs.append(XMLAttribute(prefix: ap, local: al, value: value))
          }
          guard stack.count < Limits.maxDepth else {
            throw fail("elements nest deeper than \(Limits.maxDepth)", at: s, kind: .limitExceeded)
          }
          guard doc.nodes.count < Limits.maxElements else {
            throw fail("has more than \(Limits.maxElements) elements", at: s, kind: .limitExceeded)
          }
          if stack.isEmpty {
            guard !rootSeen else { throw fail("has a second root element <\(qname)>", at: s) }
            rootSeen = true
          }
          scopes.append(scope)
          let (p, l) = Parser.split(qname)
          let node = XMLNode(local: l, prefix: p, namespace: resolve(p), attributes: attrs, offset: base + UInt64(s))
          doc.nodes.append(node)
          let idx = doc.nodes.count - 1
          if let parent = stack.last { doc.nodes[parent].children.append(idx) } else { doc.root = idx }
          if selfClosing { scopes.removeLast() } else { stack.append(idx) }
        }
      }
      guard stack.isEmpty else {
        throw fail("ends inside <\(doc.nodes[stack[stack.count - 1]].local)> (unterminated element)", kind: .truncated)
      }
      guard rootSeen else { throw fail("has no root element", kind: .truncated) }
      return doc
    }
  }

  /// Bytes as UTF-8 for the scanner: a UTF-8 BOM is dropped; UTF-16 with a BOM is transcoded.
  /// Anything else is scanned as bytes (ASCII-compatible), whatever the declaration says.
  static func normalize(_ bytes: [UInt8]) -> [UInt8] {
    if bytes.starts(with: [0xef, 0xbb, 0xbf]) { return Array(bytes.dropFirst(3)) }
    let le = bytes.starts(with: [0xff, 0xfe])
    if le || bytes.starts(with: [0xfe, 0xff]) {
      var units = [UInt16]()
      units.reserveCapacity(bytes.count / 2)
      var p = 2
      while p + 1 < bytes.count {
        units.append(le ? UInt16(bytes[p]) | UInt16(bytes[p + 1]) << 8 : UInt16(bytes[p]) << 8 | UInt16(bytes[p + 1]))
        p += 2
      }
      return Array(String(decoding: units, as: UTF16.self).utf8)
    }
    return bytes
  }

  public static func parse(_ bytes: [UInt8], base: UInt64 = 0, format: String = "ovf") throws(ImageError) -> XMLDocument {
    var p = Parser(b: normalize(bytes), base: base, format: format)
    return try p.parse()
  }
}

// MARK: - OVF

public struct OVFFile: Sendable {
  public var id: String
  public var href: String
  public var size: UInt64?
  public var sizeText: String?
  public var compression: String?
  public var chunkSize: UInt64?
}

public struct OVFDisk: Sendable {
  public var id: String
  public var fileRef: String?
  public var capacityText: String
  public var units: String?
  /// Capacity in bytes; nil when the attribute is a property reference or not a number.
  public var capacity: UInt64?
  public var populatedSize: UInt64?
  public var format: String?

  /// The image-service disk format the format URI names, and its variant (`streamOptimized`).
  public var diskFormat: (DiskFormat, String?)? { OVFDescriptor.diskFormat(uri: format) }
}

public struct OVFSystem: Sendable {
  public var id: String?
  public var name: String?
  public var osID: String?
  public var osType: String?
  public var osDescription: String?
  public var cpus: UInt64?
  public var memoryMiB: UInt64?
  public var diskItems = 0
  public var productSections = 0
  public var eulaSections = 0
  /// Per deployment configuration: (configuration, cpus, memory MiB).
  public var perConfiguration: [(String, UInt64?, UInt64?)] = []
}

public struct OVFDescriptor: Sendable {
  public var namespace: String?
  public var version: String?
  public var files: [OVFFile] = []
  public var disks: [OVFDisk] = []
  public var systems: [OVFSystem] = []
  public var collections = 0
  public var productSections = 0
  public var eulaSections = 0
  public var configurations: [String] = []
  public var defaultConfiguration: String?
  public var doctypeOffset: UInt64?
  public var declaredEncoding: String?

  public enum Limits {
    /// Descriptor size: the largest real descriptors (vCenter 9 appliances) are ~500 KB; 4 MiB
    /// bounds the scanner's memory with a wide margin.
    public static let maxDescriptor = 4 << 20
  }

  /// Known envelope namespaces: DMTF 1.x and 2.x, VMware's pre-DMTF 0.9, oVirt's 1.x with a
  /// trailing slash.
  public static let envelopeNamespaces: Set<String> = [
    "http://schemas.dmtf.org/ovf/envelope/1", "http://schemas.dmtf.org/ovf/envelope/1/",
    "http://schemas.dmtf.org/ovf/envelope/2", "http://schemas.dmtf.org/ovf/envelope/2/",
    "http://www.vmware.com/schema/ovf/1/envelope",
  ]

  /// Element kind: the local name, or for OVF 0.9's `Section`/`Content` elements the `xsi:type`
  /// without prefix and `_Type` suffix.
  static func kind(_ n: XMLNode) -> String {
    if n.local == "Section" || n.local == "Content", let t = n.attributes.first(where: { $0.local == "type" && $0.prefix != nil })?.value {
      var k = Substring(t)
      if let c = k.lastIndex(of: ":") { k = k[k.index(after: c)...] }
      if k.hasSuffix("_Type") { k = k.dropLast(5) }
      return String(k)
    }
    return n.local
  }

  /// Multiplier of a DSP0004 programmatic unit ("byte * 2^30"), or of the spelled-out units
  /// VirtualBox and oVirt write ("MegaBytes"). nil when unknown.
  public static func unitMultiplier(_ text: String?) -> UInt64? {
    guard let text else { return 1 }
    let s = String(text.lowercased().filter { $0 != " " && $0 != "\t" })
    switch s {
    case "", "byte", "bytes", "b": return 1
    case "kilobytes", "kb", "kib", "kilobyte": return 1 << 10
    case "megabytes", "mb", "mib", "megabyte": return 1 << 20
    case "gigabytes", "gb", "gib", "gigabyte": return 1 << 30
    case "terabytes", "tb", "tib": return 1 << 40
    default: break
    }
    guard s.hasPrefix("byte*") else { return nil }
    let e = s.dropFirst(5)
    if e.hasPrefix("2^"), let n = UInt64(e.dropFirst(2)), n < 63 { return 1 << n }
    if e.hasPrefix("10^"), let n = Int(e.dropFirst(3)), n <= 18 {
      var v: UInt64 = 1
      for _ in 0..<n { v *= 10 }
      return v
    }
    if let n = UInt64(e) { return n }
    return nil
  }

  /// Disk format from an OVF Disk `format` URI (vmware.com/interfaces/specifications/vmdk.html#streamOptimized,
  /// Microsoft's vhdspec, oVirt's qcow and "wiki/Byte" raw URIs).
  public static func diskFormat(uri: String?) -> (DiskFormat, String?)? {
    guard let uri else { return nil }
    let l = uri.lowercased()
    let fragment = uri.firstIndex(of: "#").map { String(uri[uri.index(after: $0)...]) }
    if l.contains("vmdk") { return (.vmdk, fragment) }
    if l.contains("vhdx") { return (.vhdx, nil) }
    if l.contains("vhd") { return (.vhd, nil) }
    if l.contains("qcow") { return (.qcow2, nil) }
    if l.contains("wiki/byte") || l.hasSuffix("raw") { return (.raw, nil) }
    if l.contains("vdi") { return (.vdi, nil) }
    return nil
  }

  /// An href that points outside the package: a URL, an absolute path, a drive letter, a UNC path or a `..` component.
  public static func isExternal(_ href: String) -> Bool {
    if let scheme = href.prefix(before: "://"), !scheme.isEmpty,
       scheme.allSatisfy({ c in c.isLetter || c == "+" || c == "-" || c == "." })
    {
      return true
    }
    if href.lowercased().hasPrefix("file:") { return true }
    return Tar.escapesDirectory(href)
  }

  /// Whether an `Envelope` root is an OVF one: a known OVF namespace (or any namespace URI naming
  /// ovf), or OVF 0.9's unqualified markup with OVF sections under it. A SOAP Envelope is not.
  public static func isOVFEnvelope(_ doc: XMLDocument) -> Bool {
    let root = doc.nodes[doc.root]
    guard root.local == "Envelope" else { return false }
    if let ns = root.namespace {
      return envelopeNamespaces.contains(ns) || ns.lowercased().contains("/ovf")
    }
    if root.attributes.contains(where: { $0.prefix == "xmlns" && $0.value.lowercased().contains("/ovf") }) { return true }
    let sections: Set<String> = ["References", "DiskSection", "VirtualSystem", "VirtualSystemCollection", "NetworkSection"]
    return doc.children(doc.root).contains { sections.contains(kind(doc.nodes[$0])) }
  }

  public static func parse(_ bytes: [UInt8], base: UInt64 = 0) throws(ImageError) -> OVFDescriptor {
    guard bytes.count <= Limits.maxDescriptor else {
      throw ImageError(.limitExceeded, format: "ovf", field: "descriptor", offset: base,
                       "is \(bytes.count) bytes, limit \(Limits.maxDescriptor)")
    }
    let doc = try XML.parse(bytes, base: base)
    return try from(doc)
  }

  static func from(_ doc: XMLDocument) throws(ImageError) -> OVFDescriptor {
    var d = OVFDescriptor()
    d.doctypeOffset = doc.doctypeOffset
    d.declaredEncoding = doc.declaredEncoding
    let root = doc.nodes[doc.root]
    guard root.local == "Envelope" else {
      throw ImageError(.invalidField, format: "ovf", field: "root element", offset: root.offset,
                       "is <\(root.local)>, not <Envelope>")
    }
    d.namespace = root.namespace
    d.version = root.attributes.first { $0.local == "version" && ($0.prefix == nil || $0.prefix == root.prefix || $0.prefix == "ovf") }?.value

    func text(_ i: Int, _ child: String) -> String? {
      for c in doc.children(i) where doc.nodes[c].local.lowercased() == child.lowercased() {
        return doc.nodes[c].text.trimmingBlanks
      }
      return nil
    }
    func number(_ s: String?) -> UInt64? { s.flatMap { UInt64($0.trimmingBlanks) } }

    // Totals over the whole tree.
    for n in doc.nodes {
      switch kind(n) {
      case "ProductSection": d.productSections += 1
      case "EulaSection": d.eulaSections += 1
      default: break
      }
    }

    for c in doc.children(doc.root) {
      let n = doc.nodes[c]
      switch kind(n) {
      case "References":
        for f in doc.children(c) where doc.nodes[f].local == "File" {
          let fn = doc.nodes[f]
          let sizeText = fn.attr("size")
          d.files.append(OVFFile(id: fn.attr("id") ?? "", href: fn.attr("href") ?? "", size: number(sizeText), sizeText: sizeText,
                                 compression: fn.attr("compression"), chunkSize: number(fn.attr("chunkSize"))))
        }
      case "DiskSection":
        for k in doc.children(c) where doc.nodes[k].local == "Disk" {
          let dn = doc.nodes[k]
          let capText = dn.attr("capacity") ?? ""
          let units = dn.attr("capacityAllocationUnits")
          var cap: UInt64?
          if let v = number(capText), let m = unitMultiplier(units) {
            cap = try Checked.mul(v, m, "ovf", "Disk capacity", at: dn.offset)
          }
          let ref = dn.attr("fileRef")
          d.disks.append(OVFDisk(id: dn.attr("diskId") ?? "", fileRef: ref?.isEmpty == true ? nil : ref, capacityText: capText,
                                 units: units, capacity: cap, populatedSize: number(dn.attr("populatedSize")),
                                 format: dn.attr("format")))
        }
      case "DeploymentOptionSection":
        for k in doc.children(c) where doc.nodes[k].local == "Configuration" {
          let cn = doc.nodes[k]
          guard let id = cn.attr("id") else { continue }
          d.configurations.append(id)
          if cn.attr("default")?.lowercased() == "true", d.defaultConfiguration == nil { d.defaultConfiguration = id }
        }
      default: break
      }
    }
    if d.defaultConfiguration == nil { d.defaultConfiguration = d.configurations.first }

    // Virtual systems, at any depth inside collections (bounded by the document's depth limit).
    var pending = doc.children(doc.root)
    while let c = pending.popLast() {
      let k = kind(doc.nodes[c])
      if k == "VirtualSystemCollection" {
        d.collections += 1
        pending.append(contentsOf: doc.children(c))
      } else if k == "VirtualSystem" {
        d.systems.append(system(doc, c, configurations: d.configurations, defaultConfiguration: d.defaultConfiguration))
      }
    }
    d.systems.reverse()
    return d
  }

  struct Item {
    var instance: String?
    var configurations: [String]?
    var resourceType: UInt64?
    var quantity: UInt64?
    var units: String?
    var sockets: UInt64?
    var perSocket: UInt64?
  }

  static func system(_ doc: XMLDocument, _ i: Int, configurations: [String], defaultConfiguration: String?) -> OVFSystem {
    let n = doc.nodes[i]
    var s = OVFSystem()
    s.id = n.attr("id")
    var items: [Item] = []
    var stack = doc.children(i)
    for c in doc.children(i) {
      let cn = doc.nodes[c]
      switch kind(cn) {
      case "Name": s.name = cn.text.trimmingBlanks
      case "OperatingSystemSection":
        s.osID = cn.attr("id")
        s.osType = cn.attr("osType")
        for k in doc.children(c) where doc.nodes[k].local == "Description" { s.osDescription = doc.nodes[k].text.trimmingBlanks }
      case "VirtualHardwareSection":
        for k in doc.children(c) {
          let item = doc.nodes[k]
          guard item.local.hasSuffix("Item") else { continue }
          var it = Item()
          it.configurations = item.attr("configuration").map { $0.split(separator: " ").map(String.init) }
          for f in doc.children(k) {
            let fn = doc.nodes[f]
            let v = fn.text.trimmingBlanks
            switch fn.local.lowercased() {
            case "instanceid": it.instance = v
            case "resourcetype": it.resourceType = UInt64(v)
            case "virtualquantity": it.quantity = UInt64(v)
            case "allocationunits": it.units = v
            case "num_of_sockets": it.sockets = UInt64(v)
            case "cpu_per_socket": it.perSocket = UInt64(v)
            default: break
            }
          }
          if it.resourceType == 17 { s.diskItems += 1 }
          items.append(it)
        }
      default: break
      }
    }
    while let c = stack.popLast() {
      switch kind(doc.nodes[c]) {
      case "ProductSection": s.productSections += 1
      case "EulaSection": s.eulaSections += 1
      default: break
      }
      stack.append(contentsOf: doc.children(c))
    }

    func resources(_ config: String?) -> (UInt64?, UInt64?) {
      // Applicable items; a later item with the same InstanceID overrides an earlier one.
      var chosen: [Item] = []
      for it in items {
        if let cs = it.configurations, let config, !cs.contains(config) { continue }
        if let id = it.instance, let k = chosen.firstIndex(where: { $0.instance == id }) { chosen[k] = it } else { chosen.append(it) }
      }
      var cpus: UInt64?
      var mem: UInt64?
      for it in chosen {
        if it.resourceType == 3 {
          if let q = it.quantity { cpus = q } else if let a = it.sockets, let b = it.perSocket { cpus = a.multipliedReportingOverflow(by: b).partialValue }
        } else if it.resourceType == 4, let q = it.quantity {
          let m = unitMultiplier(it.units ?? "byte * 2^20") ?? (1 << 20)
          let (bytes, o) = q.multipliedReportingOverflow(by: m)
          if !o { mem = bytes >> 20 }
        }
      }
      return (cpus, mem)
    }
    (s.cpus, s.memoryMiB) = resources(defaultConfiguration)
    if !configurations.isEmpty {
      s.perConfiguration = configurations.map { c in
        let (a, b) = resources(c)
        return (c, a, b)
      }
    }
    return s
  }

  /// Files that are disks: those a Disk's fileRef names.
  public var diskFiles: [(OVFDisk, OVFFile)] {
    disks.compactMap { disk in
      guard let ref = disk.fileRef, let f = files.first(where: { $0.id == ref }) else { return nil }
      return (disk, f)
    }
  }

  /// The disk format all disks agree on, if they do.
  public var agreedDiskFormat: (DiskFormat, String?)? {
    let fs = disks.compactMap { $0.diskFormat }
    guard let first = fs.first, fs.count == disks.count, fs.allSatisfy({ $0.0 == first.0 }) else { return nil }
    return fs.allSatisfy({ $0.1 == first.1 }) ? first : (first.0, nil)
  }

  public var json: JSONObject {
    var o = JSONObject()
    o.set("namespace", namespace)
    o.set("ovf-version", version)
    o.set("files", JSON.array(files.map { f in
      var j = JSONObject()
      j.set("id", f.id)
      j.set("href", f.href)
      if let s = f.size { j.set("size", s) } else { j.set("size-text", f.sizeText) }
      j.set("compression", f.compression)
      j.set("chunk-size", f.chunkSize)
      return j.json
    }))
    o.set("disks", JSON.array(disks.map { d in
      var j = JSONObject()
      j.set("id", d.id)
      j.set("file-ref", d.fileRef)
      j.set("capacity", d.capacity)
      if d.capacity == nil { j.set("capacity-text", d.capacityText) }
      j.set("capacity-units", d.units)
      j.set("populated-size", d.populatedSize)
      j.set("format", d.format)
      if let f = d.diskFormat { j.set("disk-format", f.0.rawValue); j.set("subformat", f.1) }
      return j.json
    }))
    o.set("virtual-systems", JSON.array(systems.map { s in
      var j = JSONObject()
      j.set("id", s.id)
      j.set("name", s.name)
      j.set("os-id", s.osID)
      j.set("os-type", s.osType)
      j.set("os-description", s.osDescription)
      j.set("cpus", s.cpus)
      j.set("memory-mib", s.memoryMiB)
      j.set("disk-items", s.diskItems)
      j.set("product-sections", s.productSections)
      j.set("eula-sections", s.eulaSections)
      if !s.perConfiguration.isEmpty {
        j.set("configurations", JSON.array(s.perConfiguration.map { c in
          var x = JSONObject()
          x.set("id", c.0)
          x.set("cpus", c.1)
          x.set("memory-mib", c.2)
          return x.json
        }))
      }
      return j.json
    }))
    o.set("virtual-system-collections", collections)
    o.set("product-sections", productSections)
    o.set("eula-sections", eulaSections)
    if !configurations.isEmpty {
      o.set("deployment-options", JSON.array(configurations.map { .string($0) }))
      o.set("default-configuration", defaultConfiguration)
    }
    return o
  }

  /// Findings every descriptor gets, in or out of an OVA.
  public func findings(descriptorName: String) -> [Finding] {
    var out: [Finding] = []
    if let off = doctypeOffset {
      out.append(Finding("ovf.doctype", .unsafe, field: "DOCTYPE", offset: off,
                         "\(descriptorName) has a DOCTYPE declaration: OVF needs none, and an XML parser that processes it can be made to expand entities without bound or read local files (imgtool skipped it)",
                         fix: "remove the DOCTYPE declaration from the descriptor"))
    }
    for f in files where OVFDescriptor.isExternal(f.href) {
      out.append(Finding("ovf.external-file", .unsafe, field: "File href",
                         "File \(f.id) names '\(f.href)', outside the package: an importer would fetch or open it",
                         fix: "ship the file inside the package and reference it by a plain relative name"))
    }
    return out
  }
}

/// A manifest (.mf): one `ALG(name)= hex` line per file (OVF 1.x: SHA1; 2.x: SHA256, SHA512).
public struct OVFManifest: Sendable {
  public struct Entry: Sendable, Equatable {
    public var algorithm: Digest.Algorithm
    public var name: String
    public var digest: String
  }

  public var entries: [Entry] = []
  /// Lines that are not digest lines (1-based line numbers).
  public var malformedLines: [Int] = []

  /// Entries parsed: one per member; 10000 matches the tar walker's member limit.
  public static let maxEntries = 10_000

  public static func parse(_ bytes: [UInt8]) -> OVFManifest {
    var m = OVFManifest()
    let text = Text.utf8(bytes)
    var line = 0
    for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
      line += 1
      let l = raw.trimmingBlanks
      if l.isEmpty { continue }
      guard m.entries.count < maxEntries else { m.malformedLines.append(line); break }
      guard let open = l.firstIndex(of: "("), let close = l.lastIndex(of: ")"), open < close else {
        m.malformedLines.append(line)
        continue
      }
      let alg = l[..<open].trimmingBlanks.lowercased()
      let name = String(l[l.index(after: open)..<close])
      var rest = l[l.index(after: close)...].trimmingBlanks
      guard rest.hasPrefix("=") else { m.malformedLines.append(line); continue }
      rest = String(rest.dropFirst()).trimmingBlanks
      let digest = rest.lowercased()
      let algorithm: Digest.Algorithm
      switch alg {
      case "sha1": algorithm = .sha1
      case "sha256": algorithm = .sha256
      case "sha512": algorithm = .sha512
      default: m.malformedLines.append(line); continue
      }
      let want = algorithm == .sha1 ? 40 : algorithm == .sha256 ? 64 : 128
      guard digest.utf8.count == want, digest.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
        m.malformedLines.append(line)
        continue
      }
      m.entries.append(Entry(algorithm: algorithm, name: name, digest: digest))
    }
    return m
  }

  public var json: JSON {
    JSON.array(entries.map { e in
      var j = JSONObject()
      j.set("algorithm", e.algorithm.rawValue)
      j.set("name", e.name)
      j.set("digest", e.digest)
      return j.json
    })
  }
}

extension String {
  /// The text after the first occurrence of `needle` (no Foundation in this module).
  func suffix(after needle: String) -> Substring? {
    let h = Array(utf8), n = Array(needle.utf8)
    guard !n.isEmpty, h.count >= n.count else { return nil }
    for i in 0...(h.count - n.count) where h[i] == n[0] && Array(h[i..<(i + n.count)]) == n {
      return self[utf8.index(startIndex, offsetBy: i + n.count)...]
    }
    return nil
  }

  /// The text before the first occurrence of `needle`.
  func prefix(before needle: String) -> Substring? {
    let h = Array(utf8), n = Array(needle.utf8)
    guard !n.isEmpty, h.count >= n.count else { return nil }
    for i in 0...(h.count - n.count) where h[i] == n[0] && Array(h[i..<(i + n.count)]) == n {
      return self[..<utf8.index(startIndex, offsetBy: i)]
    }
    return nil
  }
}

extension StringProtocol {
  /// Without leading and trailing blanks (space, tab, CR, LF).
  var trimmingBlanks: String {
    let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }
    guard let s = firstIndex(where: { !blank($0) }), let e = lastIndex(where: { !blank($0) }) else { return "" }
    return String(self[s...e])
  }
}
