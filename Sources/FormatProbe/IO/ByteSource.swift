/// Where image bytes come from. Probes never see file descriptors: they ask a `ByteSource` for a
/// range and get at most `maxRead` bytes back, so no header field can size an allocation.
public protocol ByteSource: AnyObject, Sendable {
  /// Length of the input in bytes.
  var size: UInt64 { get }
  /// Bytes actually allocated on disk (`actual-size`), when known.
  var allocatedSize: UInt64? { get }
  /// Whether every offset can be read (a file), or only the retained head and tail (a stream).
  var isSeekable: Bool { get }
  /// Name for messages: the path the user gave, or `-`.
  var name: String { get }
  /// Reads up to `count` bytes at `offset`; fewer at end of input. Throws `.needsSeekable` when a
  /// stream no longer holds the range.
  func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8]
}

/// The largest single read any probe or check may ask for. Tables larger than this are read in
/// pieces; nothing in an image can make imgtool allocate more in one go.
public let maxRead = 16 << 20

extension ByteSource {
  /// Reads exactly `count` bytes or throws `.truncated` naming the field.
  public func readExactly(at offset: UInt64, count: Int, format: String, field: String) throws(ImageError) -> [UInt8] {
    let b = try read(at: offset, count: count)
    guard b.count == count else {
      throw ImageError.truncated(format, field, at: offset, need: UInt64(count), have: UInt64(b.count))
    }
    return b
  }

  /// A `ByteReader` over `count` bytes at `offset` (exactly, or `.truncated`).
  public func reader(at offset: UInt64, count: Int, format: String, field: String) throws(ImageError) -> ByteReader {
    ByteReader(try readExactly(at: offset, count: count, format: format, field: field), base: offset, format: format)
  }
}

/// A file or block device read with `pread`.
public final class FileSource: ByteSource, @unchecked Sendable {
  public let fd: Int32
  public let name: String
  public let size: UInt64
  public let allocatedSize: UInt64?
  public var isSeekable: Bool { true }

  public init(path: String) throws(ImageError) {
    fd = try Syscalls.openReadOnly(path)
    name = path
    do throws(ImageError) {
      let st = try Syscalls.stat(fd: fd, path: path)
      // Only regular files and block devices have a length to inspect; a directory or a character
      // device (/dev/zero never ends, /dev/null is empty) is a user error, not an image.
      guard st.isRegular || st.isBlockDevice else {
        throw ImageError(.io, format: "io", field: "open",
                         "\(path) is \(st.isDirectory ? "a directory" : "not a regular file or block device"), not a disk image (read a stream with '-')")
      }
      size = st.size
      allocatedSize = st.isRegular ? st.allocatedBytes : nil
    } catch {
      Syscalls.close(fd)
      throw error
    }
  }

  deinit { Syscalls.close(fd) }

  public func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8] {
    guard count > 0, offset < size else { return [] }
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

/// A byte range of another source: an OVA member, a partition. Reads past the slice end stop there.
public final class SliceSource: ByteSource, @unchecked Sendable {
  public let parent: ByteSource
  public let start: UInt64
  public let size: UInt64
  public let name: String
  public var allocatedSize: UInt64? { nil }
  public var isSeekable: Bool { parent.isSeekable }

  public init(_ parent: ByteSource, start: UInt64, length: UInt64, name: String) {
    self.parent = parent
    self.start = min(start, parent.size)
    self.size = min(length, parent.size - self.start)
    self.name = name
  }

  public func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8] {
    guard count > 0, offset < size else { return [] }
    let n = Int(min(UInt64(count), size - offset))
    return try parent.read(at: start + offset, count: n)
  }
}

/// Bytes held in memory (inflated heads of compressed files, tests).
public final class MemorySource: ByteSource, @unchecked Sendable {
  public let bytes: [UInt8]
  public let name: String
  /// The real size when `bytes` is only the head of a longer input (compressed payloads).
  public let size: UInt64
  public var allocatedSize: UInt64? { nil }
  public let isSeekable: Bool

  public init(_ bytes: [UInt8], name: String = "memory", declaredSize: UInt64? = nil) {
    self.bytes = bytes
    self.name = name
    self.size = declaredSize ?? UInt64(bytes.count)
    self.isSeekable = declaredSize == nil
  }

  public func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8] {
    guard count > 0, offset < size else { return [] }
    guard offset < UInt64(bytes.count) else {
      throw ImageError(.needsSeekable, format: "input", field: "read", offset: offset,
                       "lies beyond the \(bytes.count) bytes retained of \(name)")
    }
    let end = Int(min(UInt64(bytes.count), offset + UInt64(min(count, maxRead))))
    if end - Int(offset) < count && UInt64(end) < size {
      throw ImageError(.needsSeekable, format: "input", field: "read", offset: offset,
                       "lies beyond the \(bytes.count) bytes retained of \(name)")
    }
    return Array(bytes[Int(offset)..<end])
  }
}

/// A forward-only input (stdin, a pipe). It is read once to the end at construction, keeping the
/// first `headLimit` bytes and the last `tailLimit`, so memory is bounded whatever the length.
/// Reads inside those windows succeed; any other read throws `.needsSeekable`, and the report then
/// says so instead of guessing. `consume` sees every chunk on the way (checksums).
public final class StreamSource: ByteSource, @unchecked Sendable {
  public static let defaultHead = 4 << 20
  public static let defaultTail = 64 << 10

  public let name: String
  public private(set) var size: UInt64 = 0
  public var allocatedSize: UInt64? { nil }
  public var isSeekable: Bool { false }
  private(set) var head: [UInt8] = []
  private(set) var tail: [UInt8] = []
  private var tailStart: UInt64 = 0

  public init(fd: Int32, name: String = "-", headLimit: Int = StreamSource.defaultHead,
              tailLimit: Int = StreamSource.defaultTail,
              consume: ((UnsafeRawBufferPointer) -> Void)? = nil) throws(ImageError)
  {
    self.name = name
    let chunk = 1 << 20
    let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
    defer { buf.deallocate() }
    tail.reserveCapacity(tailLimit)
    while true {
      let n = try Syscalls.read(fd: fd, into: buf, count: chunk, path: name)
      if n == 0 { break }
      let part = UnsafeRawBufferPointer(start: buf, count: n)
      consume?(part)
      if head.count < headLimit {
        head.append(contentsOf: part.prefix(headLimit - head.count))
      }
      // Keep the last tailLimit bytes: drop from the front what the new chunk pushes out.
      if n >= tailLimit {
        tail.removeAll(keepingCapacity: true)
        tail.append(contentsOf: part.suffix(tailLimit))
      } else {
        let overflow = tail.count + n - tailLimit
        if overflow > 0 { tail.removeFirst(overflow) }
        tail.append(contentsOf: part)
      }
      size += UInt64(n)
    }
    tailStart = size - UInt64(tail.count)
  }

  public func read(at offset: UInt64, count: Int) throws(ImageError) -> [UInt8] {
    guard count > 0, offset < size else { return [] }
    let want = min(UInt64(min(count, maxRead)), size - offset)
    let end = offset + want
    if end <= UInt64(head.count) { return Array(head[Int(offset)..<Int(end)]) }
    if offset >= tailStart { return Array(tail[Int(offset - tailStart)..<Int(end - tailStart)]) }
    throw ImageError(.needsSeekable, format: "input", field: "read", offset: offset,
                     "needs \(want) bytes that a forward-only stream no longer holds (head \(head.count) bytes, tail \(tail.count) bytes kept); pass a file instead")
  }
}
