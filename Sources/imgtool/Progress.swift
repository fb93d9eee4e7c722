import FormatProbe

/// qemu-img's `-p` progress display on standard error: `    (42.00/100%)`, redrawn in place,
/// at most once per whole percent.
final class Progress: @unchecked Sendable {
  let enabled: Bool
  var lastShown = -1

  init(enabled: Bool) { self.enabled = enabled }

  func update(_ done: UInt64, _ total: UInt64) {
    guard enabled else { return }
    let pct = total == 0 ? 100 : Int(min(100, Double(done) * 100 / Double(total)))
    guard pct != lastShown else { return }
    lastShown = pct
    Syscalls.writeStderr("\r    (\(pct).00/100%)")
  }

  func finish() {
    guard enabled, lastShown >= 0 else { return }
    Syscalls.writeStderr("\r    (100.00/100%)\n")
  }
}
