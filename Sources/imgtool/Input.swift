import FormatProbe

/// Opens what the user named: a file or block device by path, or `-` for standard input (read once,
/// head and tail kept). Checksums over a stream are computed on the way through.
struct Input {
  let source: ByteSource
  let md5: String?
  let sha512: String?

  static func open(_ path: String, checksum: Bool, progress: Progress? = nil) throws(ImageError) -> Input {
    if path == "-" || !isSeekablePath(path) {
      var md5: Digest?
      var sha: Digest?
      if checksum { md5 = Digest(.md5); sha = Digest(.sha512) }
      let fd: Int32 = path == "-" ? 0 : try Syscalls.openReadOnly(path)
      defer { if fd != 0 { Syscalls.close(fd) } }
      let s = try StreamSource(fd: fd, name: path) { chunk in
        md5?.update(chunk)
        sha?.update(chunk)
      }
      return Input(source: s, md5: md5?.finalHex(), sha512: sha?.finalHex())
    }
    let file = try FileSource(path: path)
    if checksum {
      let sums = try Checksums.md5AndSHA512(fd: file.fd, path: path, size: file.size) { done, total in
        progress?.update(done, total)
      }
      progress?.finish()
      return Input(source: file, md5: sums.md5, sha512: sums.sha512)
    }
    return Input(source: file, md5: nil, sha512: nil)
  }

  /// Pipes, FIFOs and process substitutions (`<(...)`) are streams even when named by a path.
  static func isSeekablePath(_ path: String) -> Bool {
    guard let fd = try? Syscalls.openReadOnly(path) else { return true }  // let FileSource report the error
    defer { Syscalls.close(fd) }
    guard let st = try? Syscalls.stat(fd: fd, path: path) else { return true }
    return !st.isStream
  }
}

/// Output selection shared by every command: `--output=json` or `--output=human` (qemu-img's spelling).
enum OutputFormat: String {
  case human, json

  static func parse(_ args: Args) throws(ImageError) -> OutputFormat {
    guard let v = args.value("output") else { return .human }
    guard let f = OutputFormat(rawValue: v) else {
      throw ImageError(.usage, format: "imgtool", field: "--output", "must be 'human' or 'json', not '\(v)'")
    }
    return f
  }
}
