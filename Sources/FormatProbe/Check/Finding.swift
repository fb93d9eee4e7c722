/// How bad a finding is. The verdict is the worst severity among findings not allowed by policy.
public enum Severity: String, Sendable, Comparable, CaseIterable {
  case info, warning, mismatch, corrupt, unsafe

  /// Which verdict wins when several apply: unsafe, then corrupt, then mismatch. What the bytes
  /// would do to a host outranks what they are; a wrong declaration is reported only when the
  /// content itself is sound, so an exit code never hides a reach outside the image.
  var rank: Int {
    switch self {
    case .info: return 0
    case .warning: return 1
    case .mismatch: return 2
    case .corrupt: return 3
    case .unsafe: return 4
    }
  }
  public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// The overall answer of `imgtool check` (and the summary in `imgtool info`).
public enum Verdict: String, Sendable {
  case safe, unsafe, corrupt, mismatch

  /// Documented exit codes of `imgtool check`.
  public var exitCode: Int32 {
    switch self {
    case .safe: return 0
    case .unsafe: return 1
    case .corrupt: return 3
    case .mismatch: return 6
    }
  }
}

/// One named problem (or observation) in an image. `id` is stable (`qcow2.backing-file`), so
/// pipelines can allow it by name; `message` is a plain sentence for people.
public struct Finding: Sendable, Equatable {
  public var id: String
  public var severity: Severity
  public var offset: UInt64?
  public var field: String?
  public var message: String
  /// For target profiles: how to make the image acceptable.
  public var fix: String?

  public init(_ id: String, _ severity: Severity, field: String? = nil, offset: UInt64? = nil, _ message: String,
              fix: String? = nil)
  {
    self.id = id
    self.severity = severity
    self.field = field
    self.offset = offset
    self.message = message
    self.fix = fix
  }

  /// A finding made from a parse error: the image is corrupt at that field.
  public init(corrupt error: ImageError, id: String? = nil) {
    self.init(id ?? error.finding ?? "\(error.format).malformed", error.kind == .needsSeekable ? .warning : .corrupt,
              field: error.field, offset: error.offset, error.description)
  }

  public var json: JSON {
    var o = JSONObject()
    o.set("id", id)
    o.set("severity", severity.rawValue)
    o.set("field", field)
    o.set("offset", offset)
    o.set("message", message)
    o.set("fix", fix)
    return o.json
  }
}

/// A file name, URL or device an image points at. Recorded from the image's own bytes; imgtool
/// never opens, stats or resolves one.
public struct ExternalReference: Sendable, Equatable {
  /// `backing-file`, `data-file`, `extent`, `parent-hint`, `parent-locator`, ...
  public var kind: String
  public var name: String
  public var offset: UInt64?

  public init(kind: String, name: String, offset: UInt64? = nil) {
    self.kind = kind
    self.name = name
    self.offset = offset
  }

  public var json: JSON {
    var o = JSONObject()
    o.set("kind", kind)
    o.set("name", name)
    o.set("offset", offset)
    return o.json
  }
}
