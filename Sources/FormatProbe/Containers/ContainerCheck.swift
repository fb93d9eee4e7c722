/// `imgtool check` for containers: every nested image is deep-checked by its own format's checks,
/// OVA manifests are verified, compressed payloads are inflated completely (bounded) and checked.

/// The bytes one `check` may inflate in all, shared by every compressed layer and member it
/// meets, so an archive of many compressed members (or compressed payloads nested in each other)
/// cannot multiply the per-payload limit.
final class InflateBudget {
  var remaining: UInt64
  init(_ bytes: UInt64 = CompressedProbe.CheckLimits.maxOutput) { remaining = bytes }
}

enum ContainerCheck {
  /// Runs the nested image's own deep check (when its probe has one), one level deeper. Findings
  /// name the member.
  static func deepCheck(_ source: ByteSource, parent: ProbeContext, info: ImageInfo, name: String,
                        budget: InflateBudget) -> CheckReport?
  {
    guard parent.depth < parent.options.maxDepth,
          let type = Registry.probe(id: info.probe) as? any DeepCheckable.Type,
          let ctx = try? ProbeContext(source: source, depth: parent.depth + 1, options: parent.options)
    else { return nil }
    var r: CheckReport
    if type == CompressedProbe.self || type == OVAProbe.self {
      r = info.probe == CompressedProbe.id ? CompressedProbe.deepCheck(ctx, info, budget: budget) : OVAProbe.deepCheck(ctx, info, budget: budget)
    } else {
      r = type.deepCheck(ctx, info)
    }
    r.findings = r.findings.map { f in
      var f = f
      f.message = "\(name): " + f.message
      return f
    }
    return r
  }

  static func add(_ sub: CheckReport, as name: String, to report: inout CheckReport, counts key: String) {
    report.findings += sub.findings
    guard !sub.counts.isEmpty else { return }
    var members = JSONObject()
    if case let .object(pairs)? = report.counts.json[key] { for (k, v) in pairs { members.set(k, v) } }
    members.set(name, sub.counts.json)
    report.counts.set(key, members.json)
  }
}

extension OVAProbe: DeepCheckable {
  public enum CheckLimits {
    /// Piece size when streaming a member through its digest: memory stays at 1 MiB whatever the member.
    public static let digestPiece = 1 << 20
  }

  /// Streams `m`'s data through a digest.
  static func digest(_ archive: ByteSource, _ m: TarMember, _ algorithm: Digest.Algorithm) throws(ImageError) -> String {
    let d = Digest(algorithm)
    let source = memberSource(archive, m)
    var done: UInt64 = 0
    while done < source.size {
      let n = Int(min(UInt64(CheckLimits.digestPiece), source.size - done))
      let piece = try source.readExactly(at: done, count: n, format: "ova", field: "member data")
      d.update(piece)
      done += UInt64(n)
    }
    return d.finalHex()
  }

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    deepCheck(ctx, info, budget: InflateBudget())
  }

  static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo, budget: InflateBudget) -> CheckReport {
    var report = CheckReport()
    guard let listing = try? Tar.walk(ctx.source, format: "ova") else { return report }
    let regular = listing.members.filter { $0.isRegular }
    var verified = 0
    var mismatches = 0
    if info.containerFormat == .ova, let mf = regular.first(where: { ext($0.name) == "mf" }),
       let bytes = try? readMember(ctx, mf, what: "manifest")
    {
      for e in OVFManifest.parse(bytes).entries {
        guard let m = member(named: e.name, in: regular) else { continue }  // ova.member-missing, from info
        do {
          let got = try digest(ctx.source, m, e.algorithm)
          verified += 1
          if got != e.digest {
            mismatches += 1
            report.findings.append(Finding("ova.manifest-mismatch", .corrupt, field: "manifest", offset: m.dataOffset,
                                           "member '\(m.name)' has \(e.algorithm.rawValue.uppercased()) \(got), the manifest says \(e.digest)",
                                           fix: "the member was altered or damaged after the manifest was written; re-export the package"))
          }
        } catch {
          report.findings.append(Finding(corrupt: error, id: error.kind == .needsSeekable ? "input.needs-seekable" : "ova.member-truncated"))
        }
      }
    }
    report.counts.set("digests-verified", verified)
    report.counts.set("digest-mismatches", mismatches)
    report.counts.set("corruptions", mismatches)
    var checked = 0
    for child in info.children {
      guard let ci = child.result.info, let off = child.offset,
            let m = listing.members.first(where: { $0.dataOffset == off }) else { continue }
      let source = memberSource(ctx.source, m)
      guard let sub = ContainerCheck.deepCheck(source, parent: ctx, info: ci, name: child.name, budget: budget) else { continue }
      checked += 1
      ContainerCheck.add(sub, as: child.name, to: &report, counts: "members")
    }
    report.counts.set("members-checked", checked)
    return report
  }
}

extension CompressedProbe: DeepCheckable {
  public enum CheckLimits {
    /// Most bytes `check` inflates: 8 GiB covers typical cloud images; beyond it the rest of the
    /// payload is reported as unchecked rather than written to scratch space without bound.
    public static let maxOutput: UInt64 = 8 << 30
    /// The expansion ratio guard (a decompression bomb): after 1 GiB of output, stop when output
    /// exceeds 1000 times the input consumed. Deflate peaks near 1032:1 on zeros, so only all-zero
    /// gigabytes trip it for gzip; xz/zstd bombs reach far higher ratios.
    public static let ratioAfter: UInt64 = 1 << 30
    public static let maxRatio: UInt64 = 1000
  }

  public static let defaultRatioGuard = Inflate.RatioGuard(after: CheckLimits.ratioAfter, ratio: CheckLimits.maxRatio)

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    deepCheck(ctx, info, budget: InflateBudget())
  }

  static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo, budget: InflateBudget) -> CheckReport {
    deepCheck(ctx, info, maxOutput: budget.remaining, ratioGuard: defaultRatioGuard, budget: budget)
  }

  /// The check with explicit limits (tests use small ones).
  static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo, maxOutput: UInt64, ratioGuard: Inflate.RatioGuard,
                        budget: InflateBudget? = nil) -> CheckReport
  {
    let budget = budget ?? InflateBudget(maxOutput)
    var report = CheckReport()
    guard let codec = Codec.sniff(ctx.head[...]) else { return report }
    // At the depth limit the probe did not look inside (compressed.depth-limit says so), and
    // nothing inflated here could be inspected either: keep the budget.
    guard ctx.depth < ctx.options.maxDepth else { return report }
    guard codec.canInflate else {
      report.findings.append(Finding("compressed.unchecked", .unsafe, field: "payload",
                                     "the \(codec.rawValue) payload is not inflated by imgtool, so it is not checked"))
      return report
    }
    let temp: TempFile
    do { temp = try TempFile() } catch {
      report.findings.append(Finding("compressed.unchecked", .unsafe, field: "payload",
                                     "the payload could not be inflated for checking: \(error.description)"))
      report.counts.set("check-errors", 1)
      return report
    }
    let limit = min(maxOutput, budget.remaining)
    let o = Inflate.run(ctx.source, codec: codec, maxOutput: limit, ratioGuard: ratioGuard) { (piece) throws(ImageError) -> Bool in
      try temp.append(piece)
      return true
    }
    budget.remaining -= min(budget.remaining, o.produced)
    report.counts.set("compressed-bytes", o.consumed)
    report.counts.set("inflated-bytes", o.produced)
    report.counts.set("streams", o.streams)
    if codec == .gzip { report.counts.set("crc-verified", o.checksVerified) }
    let known = Set(info.findings.map(\.id))
    var corruptions = 0
    if o.hitRatioGuard {
      report.findings.append(Finding("compressed.bomb", .unsafe, field: "expansion ratio",
                                     "the payload expands more than \(ratioGuard.ratio):1 (\(o.produced) bytes from \(o.consumed)); inflation stopped",
                                     fix: "a real disk image does not compress this well; do not decompress it"))
    } else if o.hitOutputLimit {
      report.findings.append(Finding("compressed.unchecked", .unsafe, field: "payload",
                                     "the payload exceeds what this check may inflate (\(limit) bytes of the \(maxOutput)-byte limit were left); the rest is not verified"))
    }
    if let e = o.error {
      if e.kind == .needsSeekable {
        report.findings.append(Finding(corrupt: e, id: "input.needs-seekable"))
      } else {
        corruptions += 1
        if !known.contains("compressed.truncated") {
          report.findings.append(Finding(corrupt: e, id: e.finding ?? "compressed.truncated"))
        }
      }
    }
    if let t = o.trailing, !t.zeros, !known.contains("compressed.trailing-data") {
      report.findings.append(Finding("compressed.trailing-data", .warning, field: "trailing data", offset: t.offset,
                                     "\(t.count) bytes after the end of the \(codec.rawValue) data are not part of it"))
    }
    report.counts.set("corruptions", corruptions)
    guard o.complete, o.error == nil, !o.hitRatioGuard, !o.hitOutputLimit else { return report }
    report.counts.set("uncompressed-size", o.produced)
    guard let child = ctx.inspectNested(temp) else { return report }
    let name = info.children.first?.name ?? "payload"
    // Header findings of the whole payload that its 4 MiB head did not show.
    let seen = Set((info.children.first?.result.allFindings ?? []).map { $0.id + $0.message })
    for var f in child.allFindings where !seen.contains(f.id + f.message) {
      f.message = "\(name): " + f.message
      report.findings.append(f)
    }
    if let ci = child.info {
      report.counts.set("payload-format", ci.probe)
      if let sub = ContainerCheck.deepCheck(temp, parent: ctx, info: ci, name: name, budget: budget) {
        ContainerCheck.add(sub, as: name, to: &report, counts: "payload")
      }
    }
    return report
  }
}
