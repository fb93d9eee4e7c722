/// Lists the first `limit` problems a deep check finds and counts all of them. A finding is built
/// only when it is listed, so a hostile table with millions of bad entries costs no strings; past
/// the limit one `<format>.more-findings` says the rest were counted, not listed.
public struct FindingCap: Sendable {
  public let format: String
  public let limit: Int
  public private(set) var seen = 0
  /// Every corrupt problem, listed or not (qemu-img check's `corruptions`).
  public private(set) var corruptions: UInt64 = 0

  public init(format: String, limit: Int) {
    self.format = format
    self.limit = limit
  }

  public mutating func admit(_ severity: Severity, _ make: () -> Finding, into findings: inout [Finding]) {
    if severity == .corrupt { corruptions += 1 }
    if seen < limit {
      findings.append(make())
    } else if seen == limit {
      findings.append(Finding("\(format).more-findings", .info, "\(format): further problems are counted but not listed"))
    }
    seen += 1
  }
}
