/// The outcome of inspecting one input: every probe's answer, resolved into one.
public struct InspectionResult: Sendable {
  public enum Outcome: Sendable {
    /// One format (raw when nothing else matched).
    case identified(ImageInfo)
    /// Two or more image formats matched in conflicting ways.
    case ambiguous([ImageInfo])
    /// A format's magic matched but its header is malformed, and nothing else matched.
    case malformed(ImageError)
    /// The answer needs bytes a forward-only stream did not keep.
    case needsSeekable(ImageError)
  }

  public var outcome: Outcome
  /// Every probe that matched (image, container and content roles).
  public var matches: [ImageInfo]
  /// Probes whose magic matched but failed to decode, with why.
  public var failures: [(probe: String, error: ImageError)]
  public var size: UInt64
  public var allocatedSize: UInt64?

  /// The identified image, if any.
  public var info: ImageInfo? {
    if case let .identified(i) = outcome { return i }
    return nil
  }
}

/// Runs every probe in `Registry.all` over one input. Not first-match-wins: raw is the answer only
/// when nothing else matches, and two image formats matching is `ambiguous` unless the pair is a
/// known legitimate layering (a fixed VHD whose guest disk is an ISO).
public enum Inspector {
  public static func inspect(_ source: ByteSource, depth: Int = 0, options: ProbeOptions = ProbeOptions(),
                             only: [any FormatProbe.Type]? = nil) -> InspectionResult
  {
    var result = InspectionResult(outcome: .malformed(ImageError(.io, format: "input", field: "read", "not read")),
                                  matches: [], failures: [], size: source.size, allocatedSize: source.allocatedSize)
    let ctx: ProbeContext
    do {
      ctx = try ProbeContext(source: source, depth: depth, options: options)
    } catch {
      result.outcome = error.kind == .needsSeekable ? .needsSeekable(error) : .malformed(error)
      return result
    }
    for probe in only ?? Registry.all {
      do {
        if let info = try probe.probe(ctx) { result.matches.append(info) }
      } catch {
        result.failures.append((probe.id, error))
      }
    }
    result.outcome = resolve(result, source: source)
    return result
  }

  static func role(_ info: ImageInfo) -> ProbeRole {
    Registry.probe(id: info.probe)?.role ?? .image
  }

  static func resolve(_ r: InspectionResult, source: ByteSource) -> InspectionResult.Outcome {
    let images = r.matches.filter { role($0) != .content }
    let content = r.matches.filter { role($0) == .content }
    var chosen: ImageInfo
    switch images.count {
    case 0:
      // A forward-only stream that cannot answer says so. An inflated head of a compressed payload
      // (MemorySource with a declared size) has no tail at all: it is described as raw data with a
      // needs-seekable finding per probe that could not look, and `check` inflates it whole.
      if let stream = r.failures.first(where: { $0.error.kind == .needsSeekable }), !(source is MemorySource) {
        return .needsSeekable(stream.error)
      }
      if let f = r.failures.first(where: { $0.error.kind != .needsSeekable }) { return .malformed(f.error) }
      chosen = RawProbe.describe(size: source.size, lengthKnown: !(source is MemorySource) || source.isSeekable)
    case 1:
      chosen = images[0]
    default:
      // A fixed VHD is a raw disk with a footer; its guest data may legitimately be an ISO.
      let nonVHD = images.filter { !($0.probe == "vhd" && $0.subformat == "fixed") }
      if images.count == 2, nonVHD.count == 1, nonVHD[0].probe == "iso",
         var vhd = images.first(where: { $0.probe == "vhd" })
      {
        vhd.notes.append("the fixed VHD's guest data is an ISO 9660 image")
        chosen = vhd
      } else {
        return .ambiguous(images)
      }
    }
    attach(content, to: &chosen)
    for f in r.failures where f.error.kind == .needsSeekable {
      chosen.findings.append(Finding(corrupt: f.error, id: "\(f.probe).needs-seekable"))
    }
    return .identified(chosen)
  }

  /// Partition tables and filesystems describe raw data: attach them to raw disks, hybrid ISOs and
  /// fixed VHDs. Found alongside any other format they mean the file is two things at once.
  static func attach(_ content: [ImageInfo], to info: inout ImageInfo) {
    let describesData = info.probe == "raw" || info.probe == "iso" || (info.probe == "vhd" && info.subformat == "fixed")
    for c in content {
      // An x86 kernel's legacy boot sector ends in 55 AA and its setup header overlaps the last
      // partition entry by design (Linux boot protocol): that is not a second format.
      if info.probe == "aki", c.probe == "partition-table" { continue }
      if describesData {
        if let p = c.partitionTable, info.partitionTable == nil { info.partitionTable = p }
        if let f = c.filesystem, info.filesystem == nil, info.probe != "iso" { info.filesystem = f }
        info.findings += c.findings
        info.notes += c.notes
      } else {
        info.findings.append(Finding("\(info.probe).embedded-content", .unsafe,
                                     "the file is also a valid \(c.probe) (\(c.subformat ?? c.probe)): a reader that ignores the \(info.probe) header would see different data"))
      }
    }
    if info.probe == "iso", info.partitionTable != nil {
      info.notes.append("hybrid ISO: its system area also carries a partition table, so it boots from USB media too")
    }
  }
}
