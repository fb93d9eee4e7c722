/// What `imgtool check` (and the verdict in `imgtool info`) applies on top of detection.
public struct CheckOptions: Sendable {
  /// Skip deep consistency checks (tables, refcounts, block maps): header-level findings only.
  public var headerOnly = false
  /// The format the image is declared as (`--expect-format`): a different content is `mismatch`.
  public var expectFormat: String?
  /// Refuse images whose virtual size exceeds this (`--max-virtual-size`).
  public var maxVirtualSize: UInt64?
  /// Accept only these formats (`--formats raw,qcow2`); Glance disk_format values or qemu names.
  public var formats: [String]?
  /// Where the image is going (`--target glance`): adds that destination's acceptance rules.
  public var target: Target?
  /// The container format the image is declared as (`--expect-container`); with `expectFormat`
  /// and no container given, `bare` is assumed, as the image service does.
  public var expectContainer: String?
  public init() {}
}

/// One implementation behind `imgtool check` and the verdict summary of `imgtool info`.
public enum Checker {
  /// Runs deep checks (unless header-only), policy and target rules; returns the extra findings
  /// and qemu-img-check-style counters.
  public static func run(_ source: ByteSource, _ result: InspectionResult, _ options: CheckOptions)
    -> (findings: [Finding], counts: JSONObject?)
  {
    var findings: [Finding] = []
    var counts: JSONObject?
    if !options.headerOnly, let info = result.info {
      if source.isSeekable {
        let report = deepCheck(source, info)
        findings += report.findings
        if !report.counts.isEmpty { counts = report.counts }
      } else {
        // Tables and grains lie anywhere in the file: a forward-only stream cannot be checked
        // deeply, and a partial check would guess. Say so; the command exits 5.
        findings.append(Finding("input.needs-seekable", .warning,
                                "the deep check needs a seekable file (tables lie anywhere in the image); only header-level checks ran: pass a file, or --header-only to accept that"))
      }
    }
    if let expected = options.expectFormat, let f = Expectation.check(result, expected: expected) {
      findings.append(f)
    }
    if let expected = options.expectContainer ?? (options.expectFormat == nil ? nil : "bare"),
       let info = result.info, info.containerFormat.rawValue != expected.lowercased()
    {
      findings.append(Finding("image.container-mismatch", .mismatch,
                              "declared container_format \(expected), but the file is \(info.containerFormat.rawValue) (\(info.subformat ?? info.probe)); a service inspecting it as \(expected) would see \(info.containerFormat.rawValue) bytes, not \(info.diskFormat.rawValue)"))
    }
    if let info = result.info, info.virtualSize == 0 {
      findings.append(Finding("image.empty", .warning, field: "virtual-size", "the image holds no data (virtual size 0)"))
    }
    if let allowed = options.formats, let info = result.info {
      let names = Set(allowed.map(Expectation.normalise))
      if names.isDisjoint(with: Expectation.names(info)) {
        findings.append(Finding("policy.format-not-allowed", .mismatch,
                                "the image is \(info.diskFormat.rawValue), which is not among the accepted formats (\(allowed.joined(separator: ", ")))"))
      }
    }
    if let cap = options.maxVirtualSize, let v = result.info?.virtualSize, v > cap {
      findings.append(Finding("policy.virtual-size", .unsafe, field: "virtual-size",
                              "virtual size \(v) bytes exceeds the limit of \(cap) bytes"))
    }
    if let target = options.target {
      findings += TargetRules.evaluate(target, result: result, declared: options.expectFormat)
    }
    return (findings, counts)
  }

  /// The matched probe's deep check, when it has one.
  public static func deepCheck(_ source: ByteSource, _ info: ImageInfo) -> CheckReport {
    guard let probe = Registry.probe(id: info.probe) as? any DeepCheckable.Type else { return CheckReport() }
    do {
      let ctx = try ProbeContext(source: source)
      return probe.deepCheck(ctx, info)
    } catch {
      var r = CheckReport()
      r.findings.append(Finding(corrupt: error))
      return r
    }
  }
}

/// `--expect-format` / `info -f`: the format the user declared, compared with what the bytes are.
public enum Expectation {
  /// Accepts Glance disk_format values and qemu driver names (`vpc` for vhd).
  public static func normalise(_ name: String) -> String {
    switch name.lowercased() {
    case "vpc": return "vhd"
    case "parallels": return "ploop"
    default: return name.lowercased()
    }
  }

  /// Every name the identified image answers to.
  public static func names(_ info: ImageInfo) -> Set<String> {
    var n: Set<String> = [info.probe, info.diskFormat.rawValue, Expectation.normalise(info.qemuFormat),
                          info.containerFormat.rawValue]
    // Glance's ami disk_format is a raw machine image.
    if info.diskFormat == .raw { n.insert("ami") }
    return n
  }

  /// Every name `--expect-format`/`--formats` accept: Glance disk_format values, qemu driver names,
  /// container values and probe ids.
  public static var knownNames: Set<String> {
    var n = Set(DiskFormat.allCases.map(\.rawValue) + ContainerFormat.allCases.map(\.rawValue) + Registry.all.map { $0.id })
    n.formUnion(["vpc", "parallels"])
    return n
  }

  public static func check(_ result: InspectionResult, expected: String) -> Finding? {
    let want = normalise(expected)
    switch result.outcome {
    case let .identified(info):
      if names(info).contains(want) { return nil }
      let what = info.diskFormat.rawValue + (info.subformat.map { " (\($0))" } ?? "")
      return Finding("image.format-mismatch", .mismatch, "declared \(expected), but the content is \(what)")
    case .ambiguous, .malformed, .needsSeekable:
      return Finding("image.format-mismatch", .mismatch,
                     "declared \(expected), but the content could not be identified as \(expected)")
    }
  }
}
