#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An unlinked temporary file: the scratch space `imgtool check` inflates a compressed payload
/// into. It has no name once created (O_TMPFILE, or mkstemp then unlink), so nothing is left
/// behind and nothing else can open it. Readable as a `ByteSource` after writing.
public final class TempFile: ByteSource, @unchecked Sendable {
  public let fd: Int32
  public let name: String
  public private(set) var size: UInt64 = 0
  public var allocatedSize: UInt64? { nil }
  public var isSeekable: Bool { true }

  /// O_TMPFILE is a macro Swift does not import: __O_TMPFILE | O_DIRECTORY (asm-generic fcntl.h).
  static let oTmpfile: Int32 = 0o20000000 | O_DIRECTORY

  /// Creates the file in `directory`, else `$TMPDIR`, else /tmp.
  public init(directory: String? = nil, name: String = "inflated payload") throws(ImageError) {
    let dir = directory ?? Syscalls.environment("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    self.name = name
    var f = open(dir, TempFile.oTmpfile | O_RDWR | O_CLOEXEC, 0o600)
    if f < 0 {
      // Filesystems without O_TMPFILE: a unique name, unlinked at once.
      var template = Array((dir + "/imgtool-XXXXXX").utf8CString)
      f = template.withUnsafeMutableBufferPointer { p in p.baseAddress.map { mkstemp($0) } ?? -1 }
      if f >= 0 { template.withUnsafeBufferPointer { p in _ = p.baseAddress.map { unlink($0) } } }
    }
    guard f >= 0 else { throw ImageError.io(dir, "create temporary file", errno: Glibc.errno) }
    fd = f
  }

  deinit { Syscalls.close(fd) }

  /// The file's length on disk lags `size` while trailing zeros were skipped.
  private var written: UInt64 = 0

  /// Appends `bytes` at the end. All-zero pieces are not written (the file stays sparse: an
  /// inflated disk is mostly zeros, and so is a decompression bomb).
  public func append(_ bytes: UnsafeRawBufferPointer) throws(ImageError) {
    guard var p = bytes.baseAddress else { return }
    if TempFile.isZero(bytes) {
      size += UInt64(bytes.count)
      return
    }
    var left = bytes.count
    while left > 0 {
      let n = pwrite(fd, p, left, off_t(size))
      if n > 0 { p += n; left -= n; size += UInt64(n); continue }
      if n < 0 && Glibc.errno == EINTR { continue }
      throw ImageError.io(name, "write temporary file", errno: n < 0 ? Glibc.errno : ENOSPC)
    }
    written = size
  }

  static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    while i + 8 <= b.count {
      if b.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
      i += 8
    }
    while i < b.count {
      if b[i] != 0 { return false }
      i += 1
    }
    return true
  }

  public func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8] {
    guard count > 0, offset < size else { return [] }
    if written < size {
      // Extend over the skipped trailing zeros so reads there return zeros, not end of file.
      guard ftruncate(fd, off_t(size)) == 0 else { throw ImageError.io(name, "extend temporary file", errno: Glibc.errno) }
      written = size
    }
    let n = Int(min(UInt64(min(count, maxRead)), size - offset))
    var failure: ImageError?
    let out = [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
      guard let base = buf.baseAddress else { return }
      do throws(ImageError) {
        initialized = try Syscalls.pread(fd: fd, into: base, count: n, at: offset, path: name)
      } catch {
        failure = error
        initialized = 0
      }
    }
    if let failure { throw failure }
    return out
  }
}
