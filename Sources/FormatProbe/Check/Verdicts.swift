/// Turns findings into a verdict under a pipeline's policy.
public struct Policy: Sendable {
  /// Finding identifiers the user accepts (`--allow qcow2.backing-file`); they stay in the report
  /// but do not count toward the verdict.
  public var allowed: Set<String> = []
  public init(allowed: Set<String> = []) { self.allowed = allowed }

  public func counts(_ f: Finding) -> Bool {
    !allowed.contains(f.id) && !allowed.contains(where: { $0.hasSuffix(".*") && f.id.hasPrefix($0.dropLast(1)) })
  }

  public func verdict(_ findings: [Finding]) -> Verdict {
    let worst = findings.filter(counts).map(\.severity).max() ?? .info
    switch worst {
    case .mismatch: return .mismatch
    case .unsafe: return .unsafe
    case .corrupt: return .corrupt
    case .info, .warning: return .safe
    }
  }
}

extension InspectionResult {
  /// Every finding of the resolved answer, including its children's (prefixed by member name).
  public var allFindings: [Finding] {
    switch outcome {
    case let .identified(info):
      var out = info.findings
      for child in info.children {
        for var f in child.result.allFindings {
          f.message = "\(child.name): " + f.message
          out.append(f)
        }
      }
      return out
    case let .ambiguous(infos):
      let names = infos.map { $0.probe }.joined(separator: ", ")
      return [Finding("image.ambiguous", .unsafe,
                      "the file matches several formats at once (\(names)); each reader would see different data")]
    case let .malformed(e):
      return [Finding(corrupt: e)]
    case let .needsSeekable(e):
      return [Finding(corrupt: e, id: "input.needs-seekable")]
    }
  }
}
