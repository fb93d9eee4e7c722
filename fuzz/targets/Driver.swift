import FormatProbe

/// The body shared by every fuzz target: inspect the input with a chosen set of probes, deep-check
/// what was identified, and render the report in both output forms so the renderers are fuzzed too.
/// Probe sets are named by registry id, so a target compiles whatever types the registry holds.
enum FuzzDriver {
  /// Probe types for `ids`, in registry order; ids the registry does not hold are skipped.
  static func probes(_ ids: [String]) -> [any FormatProbe.Type] {
    ids.compactMap { Registry.probe(id: $0) }
  }

  /// `asStream` also inspects the input as the retained head of a longer forward-only stream, so
  /// reads past it throw `.needsSeekable`, which must surface as that outcome, never as a crash.
  static func run(_ data: UnsafePointer<UInt8>?, _ size: Int, only: [any FormatProbe.Type]?, asStream: Bool = false) {
    let bytes: [UInt8] = (data != nil && size > 0) ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    if asStream {
      let stream = MemorySource(bytes, name: "fuzz-stream", declaredSize: UInt64(bytes.count) * 2 + 512)
      render(InfoReport(filename: "fuzz-stream", result: Inspector.inspect(stream, only: only)))
    }
    let source = MemorySource(bytes, name: "fuzz-input")
    let result = Inspector.inspect(source, only: only)
    var report = InfoReport(filename: "fuzz-input", result: result)
    if let info = result.info {
      // What `imgtool check` does: the matched probe's deep check (through `Registry.probe(id:)`
      // as `DeepCheckable`), policy, and a destination's rules; here every destination's.
      var options = CheckOptions()
      options.expectFormat = info.diskFormat.rawValue
      options.maxVirtualSize = 1 << 40
      let extra = Checker.run(source, result, options)
      report.extraFindings += extra.findings
      report.checkCounts = extra.counts
      for target in Target.allCases {
        report.extraFindings += TargetRules.evaluate(target, result: result, declared: info.diskFormat.rawValue)
      }
    }
    render(report)
  }

  /// Both renderings; the JSON must parse back to the same value (image-derived strings are
  /// escaped correctly, numbers keep their exact value).
  static func render(_ report: InfoReport) {
    let value = report.json
    let json = value.rendered()
    let text = report.text
    guard let parsed = try? JSONParser.parse(json, format: "report"), parsed == value else {
      fatalError("the rendered report does not parse back to the same JSON:\n\(json)")
    }
    if text.utf8.isEmpty { fatalError("empty text report") }
  }
}
