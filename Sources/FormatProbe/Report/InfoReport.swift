/// Renders an inspection as `imgtool info` output: JSON with qemu-img's keys where the meaning is
/// the same (documented in docs/formats.md, "JSON schema"), or qemu-img-style text.
public struct InfoReport: Sendable {
  public var filename: String
  public var result: InspectionResult
  public var policy = Policy()
  /// Extra findings from deep checks or target profiles.
  public var extraFindings: [Finding] = []
  public var checkCounts: JSONObject?
  public var md5: String?
  public var sha512: String?

  public init(filename: String, result: InspectionResult) {
    self.filename = filename
    self.result = result
  }

  public var findings: [Finding] { result.allFindings + extraFindings }
  public var verdict: Verdict { policy.verdict(findings) }

  public var json: JSON {
    var o = JSONObject()
    o.set("filename", filename)
    switch result.outcome {
    case let .identified(info):
      o = InfoReport.describe(info, into: o, result: result)
    case let .ambiguous(infos):
      o.set("format", "ambiguous")
      o.set("candidates", JSON.array(infos.map { InfoReport.describe($0, into: JSONObject(), result: nil).json }))
      o.set("actual-size", result.allocatedSize)
    case let .malformed(e), let .needsSeekable(e):
      o.set("error", e.description)
      o.set("actual-size", result.allocatedSize)
    }
    o.set("verdict", verdict.rawValue)
    o.set("findings", JSON.array(findings.map(\.json)))
    if let checkCounts { o.set("check", checkCounts.json) }
    o.set("md5", md5)
    o.set("sha512", sha512)
    return o.json
  }

  static func describe(_ info: ImageInfo, into base: JSONObject, result: InspectionResult?) -> JSONObject {
    var o = base
    o.set("format", info.qemuFormat)
    o.set("disk-format", info.diskFormat.rawValue)
    o.set("container-format", info.containerFormat.rawValue)
    o.set("image-service-supported", info.diskFormat.isImageServiceValue)
    o.set("subformat", info.subformat)
    o.set("virtual-size", info.virtualSize)
    if let result {
      o.set("actual-size", result.allocatedSize)
      o.set("file-size", result.size)
    }
    o.set("min-disk", info.minDisk)
    o.set("cluster-size", info.clusterSize)
    // qemu-img prints dirty-flag for every format; a format without the notion is never dirty.
    o.set("encrypted", info.encrypted ?? false)
    o.set("dirty-flag", info.dirty ?? false)
    o.set("backing-filename", info.backingFilename)
    o.set("backing-filename-format", info.backingFormat)
    if !info.formatSpecific.isEmpty {
      var fs = JSONObject()
      fs.set("type", info.qemuFormat)
      fs.set("data", info.formatSpecific.json)
      o.set("format-specific", fs.json)
    }
    o.set("partition-table", info.partitionTable)
    o.set("filesystem", info.filesystem)
    o.set("external-references", JSON.array(info.externalReferences.map(\.json)))
    if !info.children.isEmpty {
      o.set("children", JSON.array(info.children.map { child in
        var c = JSONObject()
        c.set("name", child.name)
        c.set("offset", child.offset)
        c.set("size", child.size)
        switch child.result.outcome {
        case let .identified(i): c = describe(i, into: c, result: nil)
        case let .ambiguous(list): c.set("format", "ambiguous"); c.set("candidates", JSON.array(list.map { .string($0.probe) }))
        case let .malformed(e), let .needsSeekable(e): c.set("error", e.description)
        }
        return c.json
      }))
    }
    if !info.notes.isEmpty { o.set("notes", JSON.array(info.notes.map { .string($0) })) }
    return o
  }

  /// qemu-img info's human layout, with imgtool's additions after it.
  public var text: String {
    var lines: [String] = ["image: \(filename)"]
    switch result.outcome {
    case let .identified(info):
      InfoReport.describeText(info, result: result, into: &lines, indent: "")
    case let .ambiguous(infos):
      lines.append("file format: ambiguous (matches \(infos.map { $0.probe }.joined(separator: ", ")))")
    case let .malformed(e), let .needsSeekable(e):
      lines.append("error: \(e.description)")
    }
    if let md5 { lines.append("md5: \(md5)") }
    if let sha512 { lines.append("sha512: \(sha512)") }
    if let checkCounts {
      lines.append("Check:")
      InfoReport.renderText(checkCounts.json, indent: "    ", into: &lines)
    }
    if !findings.isEmpty { lines.append("Findings:") }
    for f in findings {
      lines.append("    \(policy.counts(f) ? "" : "(allowed) ")[\(f.severity.rawValue)] \(f.id): \(f.message)")
      if let fix = f.fix { lines.append("        fix: \(fix)") }
    }
    // The answer comes last, where a reader's eye lands (qemu-img check ends the same way).
    let counted = findings.filter(policy.counts)
    var tally: [String] = []
    for sev in Severity.allCases.reversed() {
      let n = counted.filter { $0.severity == sev }.count
      if n > 0 { tally.append("\(n) \(sev.rawValue)") }
    }
    lines.append("verdict: \(verdict.rawValue)" + (tally.isEmpty ? "" : " (" + tally.joined(separator: ", ") + ")"))
    return lines.joined(separator: "\n") + "\n"
  }

  static func describeText(_ info: ImageInfo, result: InspectionResult?, into lines: inout [String], indent: String) {
    lines.append(indent + "file format: \(info.qemuFormat)")
    var service = "disk format: \(info.diskFormat.rawValue), container format: \(info.containerFormat.rawValue)"
    if !info.diskFormat.isImageServiceValue { service += " (no image-service disk_format fits)" }
    lines.append(indent + service)
    if let s = info.subformat { lines.append(indent + "subformat: \(s)") }
    if let v = info.virtualSize { lines.append(indent + "virtual size: \(humanSize(v)) (\(v) bytes)") }
    if let result, let a = result.allocatedSize { lines.append(indent + "disk size: \(humanSize(a))") }
    if let m = info.minDisk { lines.append(indent + "min disk: \(m) GiB") }
    if let c = info.clusterSize { lines.append(indent + "cluster_size: \(c)") }
    if info.encrypted == true { lines.append(indent + "encrypted: yes") }
    if let b = info.backingFilename { lines.append(indent + "backing file: \(b)") }
    if let b = info.backingFormat { lines.append(indent + "backing file format: \(b)") }
    if !info.formatSpecific.isEmpty {
      lines.append(indent + "Format specific information:")
      renderText(info.formatSpecific.json, indent: indent + "    ", into: &lines)
    }
    if let p = info.partitionTable {
      lines.append(indent + "Partition table:")
      renderText(p, indent: indent + "    ", into: &lines)
    }
    if let f = info.filesystem {
      lines.append(indent + "Filesystem:")
      renderText(f, indent: indent + "    ", into: &lines)
    }
    if !info.externalReferences.isEmpty {
      lines.append(indent + "External references (never opened):")
      for r in info.externalReferences { lines.append(indent + "    \(r.kind): \(r.name)") }
    }
    for child in info.children {
      var head = indent + "Member \(child.name)"
      if let s = child.size { head += " (\(s) bytes)" }
      lines.append(head + ":")
      switch child.result.outcome {
      case let .identified(i): describeText(i, result: nil, into: &lines, indent: indent + "    ")
      case let .ambiguous(list): lines.append(indent + "    file format: ambiguous (\(list.map { $0.probe }.joined(separator: ", ")))")
      case let .malformed(e), let .needsSeekable(e): lines.append(indent + "    error: \(e.description)")
      }
    }
    for n in info.notes { lines.append(indent + "note: \(n)") }
  }

  static func renderText(_ v: JSON, indent: String, into lines: inout [String]) {
    switch v {
    case let .object(pairs):
      for (k, val) in pairs {
        switch val {
        case .object, .array:
          lines.append(indent + "\(k):")
          renderText(val, indent: indent + "    ", into: &lines)
        default:
          lines.append(indent + "\(k): \(scalar(val))")
        }
      }
    case let .array(items):
      for item in items {
        switch item {
        case .object:
          lines.append(indent + "[")
          renderText(item, indent: indent + "    ", into: &lines)
          lines.append(indent + "]")
        default: lines.append(indent + "- \(scalar(item))")
        }
      }
    default:
      lines.append(indent + scalar(v))
    }
  }

  static func scalar(_ v: JSON) -> String {
    if case let .string(s) = v { return s }
    return v.rendered(pretty: false)
  }

  /// `1 GiB`, `196 KiB`, `1.5 MiB`: qemu-img's size style.
  public static func humanSize(_ v: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var i = 0
    var d = Double(v)
    while d >= 1024, i < units.count - 1 { d /= 1024; i += 1 }
    if i == 0 { return "\(v) B" }
    let r = (d * 100).rounded() / 100
    let s = r == r.rounded() ? String(Int(r)) : String(r)
    return "\(s) \(units[i])"
  }
}
