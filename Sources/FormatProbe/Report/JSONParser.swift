/// A bounded JSON parser (RFC 8259) for JSON found inside images (the LUKS2 metadata area) and
/// for service responses. Depth and size are capped so hostile input cannot exhaust the stack.
public struct JSONParser {
  public static let maxDepth = 64

  let bytes: [UInt8]
  var i = 0
  let format: String

  public static func parse(_ bytes: [UInt8], format: String = "json") throws(ImageError) -> JSON {
    var p = JSONParser(bytes: bytes, format: format)
    p.skipWhitespace()
    let v = try p.value(depth: 0)
    p.skipWhitespace()
    guard p.i == p.bytes.count else { throw p.error("trailing bytes after the JSON value") }
    return v
  }

  public static func parse(_ text: String, format: String = "json") throws(ImageError) -> JSON {
    try parse(Array(text.utf8), format: format)
  }

  func error(_ what: String) -> ImageError {
    ImageError(.invalidField, format: format, field: "json", offset: UInt64(i), what)
  }

  mutating func skipWhitespace() {
    while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0a || bytes[i] == 0x0d || bytes[i] == 0x09 { i += 1 }
  }

  mutating func value(depth: Int) throws(ImageError) -> JSON {
    guard depth < JSONParser.maxDepth else { throw error("nests deeper than \(JSONParser.maxDepth)") }
    guard i < bytes.count else { throw error("ends inside a value") }
    switch bytes[i] {
    case UInt8(ascii: "{"):
      i += 1
      var pairs: [(String, JSON)] = []
      skipWhitespace()
      if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
      while true {
        skipWhitespace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a key") }
        let k = try string()
        skipWhitespace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':'") }
        i += 1
        skipWhitespace()
        pairs.append((k, try value(depth: depth + 1)))
        skipWhitespace()
        guard i < bytes.count else { throw error("ends inside an object") }
        if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
        if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
        throw error("expected ',' or '}'")
      }
    case UInt8(ascii: "["):
      i += 1
      var items: [JSON] = []
      skipWhitespace()
      if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
      while true {
        skipWhitespace()
        items.append(try value(depth: depth + 1))
        skipWhitespace()
        guard i < bytes.count else { throw error("ends inside an array") }
        if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
        if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        throw error("expected ',' or ']'")
      }
    case UInt8(ascii: "\""):
      return .string(try string())
    case UInt8(ascii: "t"): try literal("true"); return .bool(true)
    case UInt8(ascii: "f"): try literal("false"); return .bool(false)
    case UInt8(ascii: "n"): try literal("null"); return .null
    default:
      return try number()
    }
  }

  mutating func literal(_ word: String) throws(ImageError) {
    let w = Array(word.utf8)
    guard bytes.count - i >= w.count, Array(bytes[i..<(i + w.count)]) == w else { throw error("unexpected token") }
    i += w.count
  }

  mutating func number() throws(ImageError) -> JSON {
    let start = i
    if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
    var isInteger = true
    while i < bytes.count {
      let c = bytes[i]
      if c >= 0x30 && c <= 0x39 { i += 1; continue }
      if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "+")
        || (c == UInt8(ascii: "-") && i > start)
      {
        isInteger = false
        i += 1
        continue
      }
      break
    }
    let text = String(decoding: bytes[start..<i], as: UTF8.self)
    guard !text.isEmpty, text != "-" else { throw error("unexpected character") }
    if isInteger {
      if let u = UInt64(text) { return .uint(u) }
      if let s = Int64(text) { return .int(s) }
    }
    // Non-integers are kept as text: nothing imgtool reads needs fractions.
    guard text.allSatisfy({ "0123456789.eE+-".contains($0) }) else { throw error("bad number") }
    return .string(text)
  }

  mutating func hex4() throws(ImageError) -> UInt32 {
    guard bytes.count - i >= 4 else { throw error("short \\u escape") }
    var v: UInt32 = 0
    for _ in 0..<4 {
      let c = bytes[i]
      i += 1
      v <<= 4
      switch c {
      case 0x30...0x39: v |= UInt32(c - 0x30)
      case 0x41...0x46: v |= UInt32(c - 0x41 + 10)
      case 0x61...0x66: v |= UInt32(c - 0x61 + 10)
      default: throw error("bad \\u escape")
      }
    }
    return v
  }

  mutating func string() throws(ImageError) -> String {
    i += 1  // opening quote
    var out = [UInt8]()
    while i < bytes.count {
      let c = bytes[i]
      i += 1
      if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
      if c != UInt8(ascii: "\\") { out.append(c); continue }
      guard i < bytes.count else { break }
      let e = bytes[i]
      i += 1
      switch e {
      case UInt8(ascii: "n"): out.append(0x0a)
      case UInt8(ascii: "t"): out.append(0x09)
      case UInt8(ascii: "r"): out.append(0x0d)
      case UInt8(ascii: "b"): out.append(0x08)
      case UInt8(ascii: "f"): out.append(0x0c)
      case UInt8(ascii: "u"):
        var scalar = try hex4()
        if scalar >= 0xD800 && scalar < 0xDC00, bytes.count - i >= 6, bytes[i] == UInt8(ascii: "\\"),
           bytes[i + 1] == UInt8(ascii: "u")
        {
          i += 2
          let low = try hex4()
          scalar = 0x10000 + ((scalar - 0xD800) << 10) + ((low &- 0xDC00) & 0x3ff)
        }
        let u = Unicode.Scalar(scalar) ?? "?"
        out.append(contentsOf: Array(String(Character(u)).utf8))
      default: out.append(e)
      }
    }
    throw error("ends inside a string")
  }
}

extension JSON {
  /// Value at a dotted path (`format-specific.data.compat`; array items by index).
  public func at(_ path: String) -> JSON? {
    var cur: JSON? = self
    for part in path.split(separator: ".") {
      guard let c = cur else { return nil }
      if case let .array(items) = c, let idx = Int(part) {
        cur = idx < items.count ? items[idx] : nil
      } else {
        cur = c[String(part)]
      }
    }
    return cur
  }

  public var string: String? { if case let .string(s) = self { return s }; return nil }
  public var uint: UInt64? {
    switch self {
    case let .uint(u): return u
    case let .int(i): return i >= 0 ? UInt64(i) : nil
    default: return nil
    }
  }
  public var array: [JSON]? { if case let .array(a) = self { return a }; return nil }
}
