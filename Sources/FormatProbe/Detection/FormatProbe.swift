/// What a probe contributes to detection.
public enum ProbeRole: Sendable {
  /// A disk image format (qcow2, vhd, iso, ...): at most one may match.
  case image
  /// A container (ova, compressed, aki, ari): counts as an image format for ambiguity.
  case container
  /// A description of raw content (partition table, filesystem): attached to the answer.
  case content
}

/// One format's detection and header decoding. Every format is one type in `Formats/`,
/// `Containers/` or `Content/`, listed once in `Registry.all`.
public protocol FormatProbe {
  /// Registry id, used in `--formats` and in messages.
  static var id: String { get }
  static var role: ProbeRole { get }
  /// Returns nil when the bytes are not this format (no magic). Throws when they are (magic
  /// matched) but a header is malformed: the error names field and offset.
  static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo?
}

/// Deep consistency checks beyond the header, in the spirit of `qemu-img check`.
public protocol DeepCheckable: FormatProbe {
  /// Runs every check on an image this probe matched; never throws (problems are findings).
  static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport
}

/// What a deep check found, with qemu-img check's counters where they apply.
public struct CheckReport: Sendable {
  public var findings: [Finding] = []
  /// Counters (`corruptions`, `leaks`, `check-errors`, `allocated-clusters`, `total-clusters`, ...).
  public var counts = JSONObject()
  public init() {}
}

/// Options that shape detection.
public struct ProbeOptions: Sendable {
  /// How deep containers may nest (an OVA holding a compressed disk holding ...).
  public var maxDepth = 3
  public init() {}
}

/// What a probe may look at: the input, its first bytes already read, and the nesting depth.
public struct ProbeContext: Sendable {
  /// How many leading bytes every probe gets without asking.
  public static let headSize = 64 << 10

  public let source: ByteSource
  /// The first `min(size, headSize)` bytes.
  public let head: [UInt8]
  public let depth: Int
  public let options: ProbeOptions

  public init(source: ByteSource, depth: Int = 0, options: ProbeOptions = ProbeOptions()) throws(ImageError) {
    self.source = source
    self.head = try source.read(at: 0, count: ProbeContext.headSize)
    self.depth = depth
    self.options = options
  }

  public var size: UInt64 { source.size }

  /// A reader over the head, for decoding the first structures.
  public func headReader(_ format: String) -> ByteReader { ByteReader(head, base: 0, format: format) }

  /// Exactly `count` bytes at `offset`, or `.truncated` naming the field.
  public func reader(at offset: UInt64, count: Int, _ format: String, _ field: String) throws(ImageError) -> ByteReader {
    if offset <= UInt64(head.count), UInt64(count) <= UInt64(head.count) - offset {
      let o = Int(offset)
      return ByteReader(Array(head[o..<(o + count)]), base: offset, format: format)
    }
    return try source.reader(at: offset, count: count, format: format, field: field)
  }

  /// Up to `count` bytes at `offset` (fewer at end of input).
  public func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8] {
    try source.read(at: offset, count: count)
  }

  /// The last `count` bytes (fewer if the input is shorter), with their absolute offset.
  public func tail(_ count: Int, _ format: String) throws(ImageError) -> ByteReader {
    let n = UInt64(min(UInt64(count), size))
    let start = size - n
    return ByteReader(try source.read(at: start, count: Int(n)), base: start, format: format)
  }

  /// Inspects a nested input (OVA member, partition, decompressed payload) one level deeper.
  /// Returns nil when the depth limit is reached.
  public func inspectNested(_ nested: ByteSource) -> InspectionResult? {
    guard depth < options.maxDepth else { return nil }
    return Inspector.inspect(nested, depth: depth + 1, options: options)
  }
}
