import FormatProbe

/// imgtool's commands, in qemu-img's shape: `imgtool COMMAND [options] FILE`.
struct Command {
  let name: String
  let summary: String
  let usage: String
  let run: ([String]) throws(ImageError) -> Int32
}

nonisolated(unsafe) let commands: [Command] = [
  Command(name: "info", summary: "detect and describe a disk image or container", usage: InfoCommand.usage,
          run: InfoCommand.run),
  Command(name: "check", summary: "safety verdict and consistency checks for pre-upload validation",
          usage: CheckCommand.usage, run: CheckCommand.run),
]

func topUsage() -> String {
  var s = """
    usage: imgtool COMMAND [options] FILE

    imgtool inspects virtual-machine disk images and checks them before they reach an image
    service or a hypervisor. It never opens a file named inside an image.

    Commands:

    """
  for c in commands { s += "  " + c.name.padding(8) + c.summary + "\n" }
  s += """

    Run 'imgtool COMMAND --help' for a command's options.
    Exit codes: 0 ok/safe, 1 unsafe, 2 usage, 3 corrupt/malformed/ambiguous, 4 I/O error,
    5 needs a seekable file, 6 format mismatch.

    """
  return s
}

extension String {
  func padding(_ n: Int) -> String { count >= n ? self + " " : self + String(repeating: " ", count: n - count) }
}

func main() -> Int32 {
  let argv = Array(CommandLine.arguments.dropFirst())
  guard let name = argv.first else {
    Syscalls.writeStderr(topUsage())
    return Exit.usage
  }
  if name == "--help" || name == "-h" || name == "help" {
    Syscalls.writeStdout(topUsage())
    return Exit.ok
  }
  if name == "--version" || name == "-V" {
    Syscalls.writeStdout("imgtool 0.1.0\n")
    return Exit.ok
  }
  guard let command = commands.first(where: { $0.name == name }) else {
    Syscalls.writeStderr("imgtool: unknown command '\(name)'\n\n" + topUsage())
    return Exit.usage
  }
  let rest = Array(argv.dropFirst())
  if rest.contains("--help") || rest.contains("-h") {
    Syscalls.writeStdout(command.usage)
    return Exit.ok
  }
  do {
    return try command.run(rest)
  } catch {
    // Usage errors are the tool's own: no format prefix ("imgtool check: --foo is not an option").
    let text = error.kind == .usage && error.format == "imgtool" ? "\(error.field) \(error.detail)" : error.description
    Syscalls.writeStderr("imgtool \(name): \(text)\n")
    switch error.kind {
    case .usage: return Exit.usage
    case .io: return Exit.io
    case .needsSeekable: return Exit.needsSeekable
    case .mismatch: return Exit.mismatch
    default: return Exit.corrupt
    }
  }
}

import Glibc
exit(main())
