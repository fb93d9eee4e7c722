import FormatProbe

/// `imgtool info`: what an image really is, what it costs on a host, what the image service must be told.
enum InfoCommand {
  static let usage = """
    usage: imgtool info [options] FILE|-

    Detects the disk or container format by running every format's probe, and reports virtual size,
    actual size, min-disk, the image service's disk_format/container_format, format-specific
    details, external references (never opened) and a safety verdict summary.

    Options:
      -f, --format FMT      only consider FMT (qcow2, vhd, vhdx, vmdk, vdi, iso, raw, ...); exit 6 if
                            the file is not FMT
      --output=FMT          human (default) or json
      --checksum            also compute md5 and sha512 of the file's bytes (one pass)
      -h, --help            this text

    FILE may be '-' (standard input) or a pipe: the stream is read once, its first 4 MiB and last
    64 KiB are kept; a format that needs other bytes is reported as needing a seekable file (exit 5).

    Exit codes: 0 identified, 2 usage, 3 malformed or ambiguous, 4 I/O error, 5 needs a seekable
    file, 6 not the format given with -f.

    """

  static func run(_ argv: [String]) throws(ImageError) -> Int32 {
    let args = try Args(argv, valued: ["output", "format", "-f"], flags: ["checksum", "force-share", "-U"],
                        aliases: ["-f": "format"])
    let output = try OutputFormat.parse(args)
    guard args.positional.count == 1 else {
      throw ImageError(.usage, format: "imgtool", field: "info", "takes exactly one FILE (see --help)")
    }
    let path = args.positional[0]
    let input = try Input.open(path, checksum: args.has("checksum"))
    var report = InfoReport(filename: path, result: Inspector.inspect(input.source))
    report.md5 = input.md5
    report.sha512 = input.sha512
    var status: Int32 = Exit.ok
    if let expected = args.value("format") {
      let finding = Expectation.check(report.result, expected: expected)
      if let finding {
        report.extraFindings.append(finding)
        status = Exit.mismatch
      }
    }
    switch report.result.outcome {
    case .identified: break
    case .ambiguous, .malformed: status = Exit.corrupt
    case .needsSeekable: status = Exit.needsSeekable
    }
    Syscalls.writeStdout(output == .json ? report.json.rendered() + "\n" : report.text)
    if case let .malformed(e) = report.result.outcome, output == .human { Syscalls.writeStderr("imgtool info: \(e.description)\n") }
    return status
  }
}

/// `--expect-format` / `-f`: the format the user declared, compared with what the bytes are.
enum Expectation {
  /// Accepts Glance disk_format values and qemu driver names (`vpc` for vhd).
  static func normalise(_ name: String) -> String {
    switch name.lowercased() {
    case "vpc": return "vhd"
    case "parallels": return "ploop"
    default: return name.lowercased()
    }
  }

  static func check(_ result: InspectionResult, expected: String) -> Finding? {
    let want = normalise(expected)
    switch result.outcome {
    case let .identified(info):
      let got = [info.probe, info.diskFormat.rawValue, info.qemuFormat, info.containerFormat.rawValue]
      if got.contains(want) { return nil }
      return Finding("image.format-mismatch", .mismatch,
                     "declared \(expected), but the content is \(info.diskFormat.rawValue)\(info.subformat.map { " (\($0))" } ?? "")")
    case .ambiguous, .malformed, .needsSeekable:
      return Finding("image.format-mismatch", .mismatch, "declared \(expected), but the content could not be identified as it")
    }
  }
}
