/// An unlinked temporary file: the scratch space `imgtool check` inflates a compressed payload
/// into. It has no name once created (O_TMPFILE, or mkstemp then unlink), so nothing is left
/// behind and nothing else can open it. Readable as a `ByteSource` after writing.
public final class TempFile: ByteSource, @unchecked Sendable {
  public let fd: Int32
  public let name: String
  public private(set) var size: UInt64 = 0
  public var allocatedSize: UInt64? { nil }
  public var isSeekable: Bool { true }

  /// Creates the file in `directory`, else `$TMPDIR`, else /tmp.
  public init(directory: String? = nil, name: String = "inflated payload") throws(ImageError) {
    let dir = directory ?? Syscalls.environment("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    self.name = name
    let f = try Syscalls.createUnlinkedFile(inDirectory: dir)
    fd = f
  }

  deinit { Syscalls.close(fd) }

  /// The file's length on disk lags `size` while trailing zeros were skipped.
  private var written: UInt64 = 0

  /// Appends `bytes` at the end. All-zero pieces are not written (the file stays sparse: an
  /// inflated disk is mostly zeros, and so is a decompression bomb).
  public func append(_ bytes: UnsafeRawBufferPointer) throws(ImageError) {
    guard bytes.baseAddress != nil else { return }
    if TempFile.isZero(bytes) {
      size += UInt64(bytes.count)
      return
    }
    try Syscalls.pwriteAll(fd: fd, bytes, at: size, path: name)
    size += UInt64(bytes.count)
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
      try Syscalls.truncate(fd: fd, to: size, path: name)
      written = size
    }
    let n = Int(min(UInt64(min(count, maxRead)), size - offset))
    return try Syscalls.pread(fd: fd, count: n, at: offset, path: name)
  }
}
