/// A JSON value with ordered object keys, so output is stable and reads in a sensible order.
/// imgtool's own serializer: FormatProbe links no Foundation (start-up time).
public indirect enum JSON: Sendable, Equatable {
  case null
  case bool(Bool)
  case int(Int64)
  case uint(UInt64)
  case string(String)
  case array([JSON])
  case object([(String, JSON)])

  public static func == (a: JSON, b: JSON) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case let (.bool(x), .bool(y)): return x == y
    case let (.int(x), .int(y)): return x == y
    case let (.uint(x), .uint(y)): return x == y
    case let (.int(x), .uint(y)), let (.uint(y), .int(x)): return x >= 0 && UInt64(x) == y
    case let (.string(x), .string(y)): return x == y
    case let (.array(x), .array(y)): return x == y
    case let (.object(x), .object(y)):
      return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    default: return false
    }
  }

  public subscript(key: String) -> JSON? {
    if case let .object(pairs) = self { return pairs.first { $0.0 == key }?.1 }
    return nil
  }

  /// Serialized the way `qemu-img info --output=json` lays it out: 4-space indent.
  public func rendered(pretty: Bool = true) -> String {
    var out = ""
    write(into: &out, indent: 0, pretty: pretty)
    return out
  }

  func write(into out: inout String, indent: Int, pretty: Bool) {
    switch self {
    case .null: out += "null"
    case let .bool(b): out += b ? "true" : "false"
    case let .int(i): out += String(i)
    case let .uint(u): out += String(u)
    case let .string(s): JSON.quote(s, into: &out)
    case let .array(items):
      if items.isEmpty { out += "[]"; return }
      out += "["
      for (i, v) in items.enumerated() {
        if i > 0 { out += "," }
        if pretty { out += "\n" + String(repeating: " ", count: indent + 4) }
        v.write(into: &out, indent: indent + 4, pretty: pretty)
      }
      if pretty { out += "\n" + String(repeating: " ", count: indent) }
      out += "]"
    case let .object(pairs):
      if pairs.isEmpty { out += "{}"; return }
      out += "{"
      for (i, (k, v)) in pairs.enumerated() {
        if i > 0 { out += "," }
        if pretty { out += "\n" + String(repeating: " ", count: indent + 4) }
        JSON.quote(k, into: &out)
        out += pretty ? ": " : ":"
        v.write(into: &out, indent: indent + 4, pretty: pretty)
      }
      if pretty { out += "\n" + String(repeating: " ", count: indent) }
      out += "}"
    }
  }

  static func quote(_ s: String, into out: inout String) {
    out += "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      default:
        if u.value < 0x20 || u.value == 0x7f {
          let h = String(u.value, radix: 16)
          out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
        } else {
          out.unicodeScalars.append(u)
        }
      }
    }
    out += "\""
  }
}

/// Builds a JSON object in insertion order, leaving out nil values.
public struct JSONObject: Sendable {
  public private(set) var pairs: [(String, JSON)] = []
  public init() {}
  public mutating func set(_ key: String, _ value: JSON?) {
    guard let value else { return }
    if let i = pairs.firstIndex(where: { $0.0 == key }) { pairs[i].1 = value } else { pairs.append((key, value)) }
  }
  public mutating func set(_ key: String, _ v: String?) { set(key, v.map { JSON.string($0) }) }
  public mutating func set(_ key: String, _ v: UInt64?) { set(key, v.map { JSON.uint($0) }) }
  public mutating func set(_ key: String, _ v: Int?) { set(key, v.map { JSON.int(Int64($0)) }) }
  public mutating func set(_ key: String, _ v: Bool?) { set(key, v.map { JSON.bool($0) }) }
  public var json: JSON { .object(pairs) }
  public var isEmpty: Bool { pairs.isEmpty }
}
