/// The one error type of imgtool. Every failure names the format, the field and, where it has one,
/// the byte offset, so the one-line message is enough to find the problem with a hex dump:
/// `vhd: footer checksum at 0x40 is 0x1234, computed 0x5678`.
public struct ImageError: Error, CustomStringConvertible, Sendable, Equatable {
  public enum Kind: String, Sendable {
    /// The input ends before a structure it declares.
    case truncated
    /// A field holds a value the format does not allow.
    case invalidField
    /// A field asks for more than imgtool's documented limits (docs/formats.md).
    case limitExceeded
    /// A valid feature imgtool does not implement.
    case unsupported
    /// The input matches two formats in conflicting ways.
    case ambiguous
    /// The answer needs bytes a forward-only stream no longer has.
    case needsSeekable
    /// The content is not the format the user declared.
    case mismatch
    /// The operating system refused an operation.
    case io
    /// The command line is wrong.
    case usage
  }

  public var kind: Kind
  /// Format name (`qcow2`, `vhd`, ...) or a subsystem (`io`, `cli`).
  public var format: String
  /// The field or structure concerned, named as the spec names it where it has a name.
  public var field: String
  /// Absolute byte offset of the field in the input, when known.
  public var offset: UInt64?
  /// What was found and what was expected.
  public var detail: String
  /// The stable finding identifier `imgtool check` reports for this error (`vhd.footer-checksum`);
  /// nil gives `<format>.malformed`.
  public var finding: String?

  public init(_ kind: Kind, format: String, field: String, offset: UInt64? = nil, _ detail: String,
              finding: String? = nil)
  {
    self.finding = finding
    self.kind = kind
    self.format = format
    self.field = field
    self.offset = offset
    self.detail = detail
  }

  public var description: String {
    var s = "\(format): \(field)"
    if let offset { s += " at 0x" + String(offset, radix: 16) }
    if !detail.isEmpty { s += " " + detail }
    return s
  }

  public static func truncated(_ format: String, _ field: String, at offset: UInt64, need: UInt64, have: UInt64)
    -> ImageError
  {
    ImageError(.truncated, format: format, field: field, offset: offset,
               "needs \(need) bytes, the input has \(have) from there (truncated)")
  }

  public static func io(_ path: String, _ operation: String, errno code: Int32) -> ImageError {
    ImageError(.io, format: "io", field: operation, "failed on \(path): \(Syscalls.errorString(code))")
  }
}

/// Hex rendering used in messages: `0x1f`.
@inline(__always) public func hex<T: BinaryInteger>(_ v: T) -> String { "0x" + String(v, radix: 16) }
