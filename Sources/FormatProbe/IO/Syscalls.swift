#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Every libc call imgtool makes lives here: one place to audit what touches the system.
/// Reads retry on EINTR and loop over short reads.
public enum Syscalls {
  public static func errorString(_ code: Int32) -> String {
    guard let p = strerror(code) else { return "errno \(code)" }
    return String(cString: p)
  }

  public static var errno: Int32 { Glibc.errno }

  /// Opens `path` read-only. Only ever called with a path the user named on the command line.
  public static func openReadOnly(_ path: String) throws(ImageError) -> Int32 {
    while true {
      let fd = open(path, O_RDONLY | O_CLOEXEC)
      if fd >= 0 { return fd }
      if Glibc.errno == EINTR { continue }
      throw ImageError.io(path, "open", errno: Glibc.errno)
    }
  }

  public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

  public struct FileStat: Sendable {
    public var size: UInt64
    public var allocatedBytes: UInt64
    public var isRegular: Bool
    public var isBlockDevice: Bool
    public var isDirectory: Bool
    /// Pipes, FIFOs and sockets: readable once, front to back.
    public var isStream: Bool
  }

  public static func stat(fd: Int32, path: String) throws(ImageError) -> FileStat {
    var st = Glibc.stat()
    guard fstat(fd, &st) == 0 else { throw ImageError.io(path, "fstat", errno: Glibc.errno) }
    let mode = st.st_mode & S_IFMT
    var size = UInt64(max(st.st_size, 0))
    if mode == S_IFBLK {
      let end = lseek(fd, 0, SEEK_END)
      if end > 0 { size = UInt64(end) }
      _ = lseek(fd, 0, SEEK_SET)
    }
    return FileStat(size: size, allocatedBytes: UInt64(max(st.st_blocks, 0)) * 512,
                    isRegular: mode == S_IFREG, isBlockDevice: mode == S_IFBLK, isDirectory: mode == S_IFDIR,
                    isStream: mode == S_IFIFO || mode == S_IFSOCK)
  }

  /// `pread` until `count` bytes or end of file; returns how many were read.
  public static func pread(fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64,
                           path: String) throws(ImageError) -> Int
  {
    var done = 0
    while done < count {
      guard let off = Int64(exactly: offset &+ UInt64(done)), offset <= UInt64(Int64.max) - UInt64(done) else { break }
      let n = Glibc.pread(fd, buffer + done, count - done, off_t(off))
      if n > 0 { done += n; continue }
      if n == 0 { break }
      if Glibc.errno == EINTR { continue }
      throw ImageError.io(path, "read", errno: Glibc.errno)
    }
    return done
  }

  /// `read` from a stream until `count` bytes or end of input.
  public static func read(fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int, path: String)
    throws(ImageError) -> Int
  {
    var done = 0
    while done < count {
      let n = Glibc.read(fd, buffer + done, count - done)
      if n > 0 { done += n; continue }
      if n == 0 { break }
      if Glibc.errno == EINTR { continue }
      throw ImageError.io(path, "read", errno: Glibc.errno)
    }
    return done
  }

  public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer) {
    guard var p = bytes.baseAddress else { return }
    var left = bytes.count
    while left > 0 {
      let n = Glibc.write(fd, p, left)
      if n > 0 { p += n; left -= n; continue }
      if n < 0 && Glibc.errno == EINTR { continue }
      return
    }
  }

  public static func writeStdout(_ s: String) {
    var s = s
    s.withUTF8 { writeAll(fd: 1, UnsafeRawBufferPointer($0)) }
  }

  public static func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { writeAll(fd: 2, UnsafeRawBufferPointer($0)) }
  }

  /// Whether `fd` supports positioned reads (regular files and block devices do; pipes do not).
  public static func isSeekable(fd: Int32) -> Bool { lseek(fd, 0, SEEK_CUR) >= 0 }

  public static func environment(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
  }
}
