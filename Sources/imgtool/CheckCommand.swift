import FormatProbe

/// `imgtool check`: a safety verdict with named findings, for pre-upload validation.
enum CheckCommand {
  static let usage = """
    usage: imgtool check [options] FILE|-

    Detects the format, runs the format's deep consistency checks (tables, refcounts, block maps,
    markers) and reports every finding with a stable id, a severity, the field and offset, and a
    sentence. Nothing named inside the image is ever opened.

    Verdicts: safe; unsafe (would reach outside the image, cannot be verified, or is two formats at
    once); corrupt (malformed, truncated, out of range, overlapping, bad checksums); mismatch (not
    the declared format, or refused by the --target).

    Options:
      --expect-format FMT     the format the image is declared as (Glance disk_format or qemu name)
      --expect-container C    the declared container_format (default bare when --expect-format
                              is given, as the image service assumes)
      --allow ID[,ID...]      accept these finding ids (repeatable; 'qcow2.*' allows a family)
      --max-virtual-size N    refuse images larger than N (suffixes K, M, G, T)
      --formats FMT[,FMT...]  accept only these formats
      --target T              add the acceptance rules of glance, azure, esxi, aws or gce
      --header-only           skip deep checks (header-level findings only, like 'info')
      --output=FMT            human (default) or json
      -h, --help              this text

    Exit codes: 0 safe, 1 unsafe, 2 usage, 3 corrupt, 4 I/O error, 5 needs a seekable file (a
    stream cannot be checked deeply; --header-only accepts that), 6 mismatch. When several
    apply, unsafe wins over corrupt, and corrupt over mismatch.

    """

  static func run(_ argv: [String]) throws(ImageError) -> Int32 {
    let args = try Args(argv, valued: ["output", "expect-format", "expect-container", "allow", "max-virtual-size", "formats",
                                       "target", "-f", "format"],
                        flags: ["header-only", "force-share", "-U", "quiet", "-q"],
                        aliases: ["-f": "expect-format", "format": "expect-format"])
    let output = try OutputFormat.parse(args)
    guard args.positional.count == 1 else {
      throw ImageError(.usage, format: "imgtool", field: "check", "takes exactly one FILE (see --help)")
    }
    var options = CheckOptions()
    options.headerOnly = args.has("header-only")
    options.expectFormat = try validated(args.value("expect-format"), option: "--expect-format")
    options.expectContainer = args.value("expect-container")
    if let c = options.expectContainer, ContainerFormat(rawValue: c.lowercased()) == nil {
      throw ImageError(.usage, format: "imgtool", field: "--expect-container",
                       "'\(c)' is not a container format (\(ContainerFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    for f in args.values("formats") { _ = try validated(f, option: "--formats") }
    if let s = args.value("max-virtual-size") { options.maxVirtualSize = try Args.size(s, option: "--max-virtual-size") }
    if !args.values("formats").isEmpty { options.formats = args.values("formats") }
    if let t = args.value("target") {
      guard let target = Target(rawValue: t) else {
        throw ImageError(.usage, format: "imgtool", field: "--target",
                         "must be one of \(Target.allCases.map(\.rawValue).joined(separator: ", ")), not '\(t)'")
      }
      options.target = target
    }
    let path = args.positional[0]
    let input = try Input.open(path, checksum: false)
    var report = InfoReport(filename: path, result: Inspector.inspect(input.source))
    report.policy = Policy(allowed: Set(args.values("allow")))
    let extra = Checker.run(input.source, report.result, options)
    report.extraFindings = extra.findings
    report.checkCounts = extra.counts
    // An --allow that names nothing in this report is most often a typo: say so, do not fail.
    let ids = Set(report.findings.map(\.id))
    for a in args.values("allow") where !ids.contains(a) && !(a.hasSuffix(".*") && ids.contains { $0.hasPrefix(a.dropLast(1)) }) {
      Syscalls.writeStderr("imgtool check: note: --allow \(a) matches no finding of this image\n")
    }
    if !(args.has("quiet") || args.has("-q")) {
      Syscalls.writeStdout(output == .json ? report.json.rendered() + "\n" : report.text)
    }
    if case .needsSeekable = report.result.outcome { return Exit.needsSeekable }
    let verdict = report.verdict
    // A stream that could not be checked deeply is not called safe: exit 5 unless worse is known.
    if verdict == .safe, report.findings.contains(where: { $0.id == "input.needs-seekable" }) { return Exit.needsSeekable }
    return verdict.exitCode
  }

  /// A declared format must be a name imgtool knows; a typo is a usage error, not a mismatch.
  static func validated(_ name: String?, option: String) throws(ImageError) -> String? {
    guard let name else { return nil }
    guard Expectation.knownNames.contains(Expectation.normalise(name)) else {
      throw ImageError(.usage, format: "imgtool", field: option,
                       "'\(name)' is not a known format (\(DiskFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    return name
  }
}
