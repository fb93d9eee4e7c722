#if canImport(Glibc)
import Glibc
#endif

/// MD5 (Glance `checksum`) and SHA-512 (Glance `os_hash_value`) of a file's bytes in one pass:
/// one thread reads 1 MiB blocks, MD5 runs on it while a second thread runs SHA-512 on the same block.
public enum Checksums {
  public static func md5AndSHA512(fd: Int32, path: String, size: UInt64 = 0,
                                  progress: ((UInt64, UInt64) -> Void)? = nil) throws(ImageError) -> (md5: String, sha512: String)
  {
    let md5 = Digest(.md5)
    let sha = Digest(.sha512)
    let block = 4 << 20
    let bufs = [UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 4096),
                UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 4096)]
    defer { bufs.forEach { $0.deallocate() } }
    var offset: UInt64 = 0
    var which = 0
    var n = try Syscalls.pread(fd: fd, into: bufs[0], count: block, at: 0, path: path)
    while n > 0 {
      let cur = UnsafeRawBufferPointer(start: bufs[which], count: n)
      // SHA-512 on a worker while this thread runs MD5 and reads the next block into the other buffer.
      let worker = Worker { sha.update(cur) }
      md5.update(cur)
      offset += UInt64(n)
      let next = (which + 1) % 2
      let m: Int
      do {
        m = try Syscalls.pread(fd: fd, into: bufs[next], count: block, at: offset, path: path)
      } catch {
        worker.join()
        throw error
      }
      worker.join()
      progress?(offset, size)
      which = next
      n = m
    }
    return (md5.finalHex(), sha.finalHex())
  }
}

/// A joinable POSIX thread running one closure (Dispatch would pull in more than this needs).
final class Worker: @unchecked Sendable {
  var thread = pthread_t()
  let body: () -> Void

  init(_ body: @escaping () -> Void) {
    self.body = body
    let unmanaged = Unmanaged.passRetained(self)
    pthread_create(&thread, nil, { arg in
      let w = Unmanaged<Worker>.fromOpaque(arg!).takeRetainedValue()
      w.body()
      return nil
    }, unmanaged.toOpaque())
  }

  func join() { pthread_join(thread, nil) }
}
