import FormatProbe

/// A small command-line parser in qemu-img's style: `--key value`, `--key=value`, short flags
/// (`-f fmt`), flags without values, `--` ending options, and positional arguments.
struct Args {
  var options: [String: [String]] = [:]
  var flags: Set<String> = []
  var positional: [String] = []

  /// `valued` lists the options that take a value (long names without dashes, short as `-f`).
  init(_ argv: [String], valued: Set<String>, flags known: Set<String>, aliases: [String: String] = [:]) throws(ImageError) {
    var i = 0
    var onlyPositional = false
    while i < argv.count {
      let a = argv[i]
      i += 1
      if onlyPositional || a == "-" || !a.hasPrefix("-") {
        positional.append(a)
        continue
      }
      if a == "--" { onlyPositional = true; continue }
      var name: String
      var value: String?
      if a.hasPrefix("--") {
        let body = a.dropFirst(2)
        if let eq = body.firstIndex(of: "=") {
          name = String(body[..<eq])
          value = String(body[body.index(after: eq)...])
        } else {
          name = String(body)
        }
      } else {
        name = a
        if a.count > 2 && valued.contains(String(a.prefix(2))) {  // -fqcow2
          name = String(a.prefix(2))
          value = String(a.dropFirst(2))
        }
      }
      name = aliases[name] ?? name
      if valued.contains(name) {
        if value == nil {
          guard i < argv.count else { throw ImageError(.usage, format: "imgtool", field: a, "needs a value") }
          value = argv[i]
          i += 1
        }
        options[name, default: []].append(value ?? "")
      } else if known.contains(name) {
        guard value == nil else { throw ImageError(.usage, format: "imgtool", field: a, "takes no value") }
        flags.insert(name)
      } else {
        throw ImageError(.usage, format: "imgtool", field: a, "is not an option of this command (see --help)")
      }
    }
  }

  func value(_ name: String) -> String? { options[name]?.last }
  func values(_ name: String) -> [String] { (options[name] ?? []).flatMap { $0.split(separator: ",").map(String.init) } }
  func has(_ flag: String) -> Bool { flags.contains(flag) }

  /// Parses `10G`, `512M`, `4096`, `1T` (binary units, as qemu-img).
  static func size(_ s: String, option: String) throws(ImageError) -> UInt64 {
    let units: [Character: UInt64] = ["k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20, "g": 1 << 30, "G": 1 << 30,
                                      "t": 1 << 40, "T": 1 << 40, "p": 1 << 50, "P": 1 << 50, "b": 1, "B": 1]
    var digits = Substring(s)
    var mult: UInt64 = 1
    if let last = s.last, let m = units[last] { mult = m; digits = s.dropLast() }
    guard let n = UInt64(digits) else { throw ImageError(.usage, format: "imgtool", field: option, "'\(s)' is not a size") }
    let (r, o) = n.multipliedReportingOverflow(by: mult)
    guard !o else { throw ImageError(.usage, format: "imgtool", field: option, "'\(s)' is too large") }
    return r
  }
}

/// Documented exit codes (docs/formats.md, "Exit codes").
enum Exit {
  static let ok: Int32 = 0
  static let unsafe: Int32 = 1
  static let usage: Int32 = 2
  static let corrupt: Int32 = 3
  static let io: Int32 = 4
  static let needsSeekable: Int32 = 5
  static let mismatch: Int32 = 6
}
