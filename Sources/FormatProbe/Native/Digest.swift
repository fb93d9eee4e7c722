import CCrypto

/// Message digests through OpenSSL's EVP interface (the only place libcrypto is called).
public final class Digest: @unchecked Sendable {
  public enum Algorithm: String, Sendable { case md5, sha1, sha256, sha512 }
  let ctx: OpaquePointer
  public let algorithm: Algorithm

  public init(_ algorithm: Algorithm) {
    self.algorithm = algorithm
    // EVP_MD_CTX_new fails only when out of memory, which Swift itself would not survive.
    ctx = EVP_MD_CTX_new()!
    let md: OpaquePointer?
    switch algorithm {
    case .md5: md = EVP_md5()
    case .sha1: md = EVP_sha1()
    case .sha256: md = EVP_sha256()
    case .sha512: md = EVP_sha512()
    }
    EVP_DigestInit_ex(ctx, md, nil)
  }

  deinit { EVP_MD_CTX_free(ctx) }

  public func update(_ bytes: UnsafeRawBufferPointer) {
    guard let p = bytes.baseAddress, bytes.count > 0 else { return }
    EVP_DigestUpdate(ctx, p, bytes.count)
  }

  public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

  /// Lower-case hex digest; the object is finished after this.
  public func finalHex() -> String {
    var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var len: UInt32 = 0
    EVP_DigestFinal_ex(ctx, &out, &len)
    let digits = Array("0123456789abcdef".utf8)
    var s = [UInt8]()
    for b in out.prefix(Int(len)) { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
    return String(decoding: s, as: UTF8.self)
  }
}
