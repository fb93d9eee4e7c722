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
      -p, --progress        show progress of the checksum pass on standard error
      -h, --help            this text

    FILE may be '-' (standard input) or a pipe: the stream is read once, its first 4 MiB and last
    64 KiB are kept; a format that needs other bytes is reported as needing a seekable file (exit 5).

    Exit codes: 0 identified, 2 usage, 3 malformed or ambiguous, 4 I/O error, 5 needs a seekable
    file, 6 not the format given with -f. The exit code says whether the file could be identified;
    the verdict line reports safety (use 'imgtool check' to gate on it).

    """

  static func run(_ argv: [String]) throws(ImageError) -> Int32 {
    let args = try Args(argv, valued: ["output", "format", "-f"], flags: ["checksum", "force-share", "-U", "-p", "progress"],
                        aliases: ["-f": "format"])
    let output = try OutputFormat.parse(args)
    guard args.positional.count == 1 else {
      throw ImageError(.usage, format: "imgtool", field: "info", "takes exactly one FILE (see --help)")
    }
    let path = args.positional[0]
    let input = try Input.open(path, checksum: args.has("checksum"), progress: Progress(enabled: args.has("-p") || args.has("progress")))
    var report = InfoReport(filename: path, result: Inspector.inspect(input.source))
    report.md5 = input.md5
    report.sha512 = input.sha512
    var status: Int32 = Exit.ok
    // The same checks as 'imgtool check --header-only': info carries the verdict summary.
    var options = CheckOptions()
    options.headerOnly = true
    options.expectFormat = try CheckCommand.validated(args.value("format"), option: "--format")
    report.extraFindings = Checker.run(input.source, report.result, options).findings
    if report.extraFindings.contains(where: { $0.id == "image.format-mismatch" }) { status = Exit.mismatch }
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

