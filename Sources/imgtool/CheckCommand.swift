import FormatProbe

/// `imgtool check`: a safety verdict with named findings.
enum CheckCommand {
  static let usage = """
    usage: imgtool check [options] FILE|-

    Options:
      --expect-format FMT   the format the image is declared as (exit 6 if it is not)
      --output=FMT          human (default) or json
      -h, --help            this text

    Exit codes: 0 safe, 1 unsafe, 2 usage, 3 corrupt, 4 I/O error, 5 needs a seekable file, 6 mismatch.

    """

  static func run(_ argv: [String]) throws(ImageError) -> Int32 {
    let args = try Args(argv, valued: ["output", "expect-format"], flags: [])
    let output = try OutputFormat.parse(args)
    guard args.positional.count == 1 else {
      throw ImageError(.usage, format: "imgtool", field: "check", "takes exactly one FILE (see --help)")
    }
    let path = args.positional[0]
    let input = try Input.open(path, checksum: false)
    var report = InfoReport(filename: path, result: Inspector.inspect(input.source))
    if let expected = args.value("expect-format"), let f = Expectation.check(report.result, expected: expected) {
      report.extraFindings.append(f)
    }
    Syscalls.writeStdout(output == .json ? report.json.rendered() + "\n" : report.text)
    return report.verdict.exitCode
  }
}
