/// A disk image inside one compression layer (the image service's `compressed` container):
/// gzip, xz, zstd, lz4 (frame or legacy), bzip2 (recognised, not inflated). `info` inflates a
/// bounded head into memory and probes it as the child; compressed cpio archives belong to the
/// `ari` probe, so this probe steps aside for them.
public enum CompressedProbe: FormatProbe {
  public static let id = "compressed"
  public static let role = ProbeRole.container

  public enum Limits {
    /// Inflated bytes probed by `info`: enough for every header imgtool reads at the start of a
    /// disk (qcow2 L1 tables and VMDK grain directories beyond it need `check` or a plain file).
    public static let infoHead = 4 << 20
    /// Deflate's largest expansion ratio (RFC 1951: a 258-byte match per 2 bits, about 1032:1);
    /// below 2^32 / 1032 compressed bytes the gzip ISIZE (size mod 2^32) cannot have wrapped.
    public static let deflateMaxRatio: UInt64 = 1032
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    guard let codec = Codec.sniff(ctx.head[...]) else { return nil }
    var info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .raw, subformat: codec.rawValue)
    info.containerFormat = .compressed
    var fs = JSONObject()
    fs.set("compression", codec.rawValue)
    info.notes.append("qemu-img has no driver for \(codec.rawValue) files: it would read the compressed bytes as a raw disk")
    guard codec.canInflate else {
      info.formatSpecific = fs
      info.notes.append("bzip2 is recognised but not inflated by imgtool; the payload's format is unknown")
      return info
    }
    let small = Inflate.head(ctx.source, codec: codec, limit: 512)
    if small.bytes.isEmpty, let e = small.outcome.error, !(small.outcome.complete) { throw e }
    if ARIProbe.cpioFormat(small.bytes[...]) != nil { return nil }  // an initramfs: the ari probe's
    guard ctx.depth < ctx.options.maxDepth else {
      // The payload could not be probed anyway; inflating 4 MiB per nested member would let an
      // archive of compressed archives multiply the work.
      info.formatSpecific = fs
      info.findings.append(depthLimit(ctx))
      return info
    }
    let head = Inflate.head(ctx.source, codec: codec, limit: Limits.infoHead)
    let o = head.outcome
    if codec == .gzip, let t = try? ctx.tail(4, "gzip"), let isize = try? t.u32LE(at: 0, "ISIZE") {
      fs.set("isize", UInt64(isize))  // the last member's length mod 2^32
    }
    if let h = o.gzipHeader {
      fs.set("original-name", h.name)
      fs.set("mtime", h.mtime == 0 ? nil : UInt64(h.mtime))
      fs.set("os", h.osName)
      fs.set("comment", h.comment)
    }
    // The uncompressed size: exact when the whole stream fit in the head, else what the format declares.
    let whole = o.complete && o.error == nil && !o.hitOutputLimit
    var size: UInt64?
    var sizeSource = "inflated"
    if whole {
      size = o.produced
    } else {
      switch codec {
      case .gzip:
        let t = try ctx.tail(4, "gzip")
        let isize = UInt64(try t.u32LE(at: 0, "ISIZE"))
        if ctx.size < (1 << 32) / Limits.deflateMaxRatio { size = isize; sizeSource = "ISIZE" }
      case .xz:
        sizeSource = "xz index"
        do { size = try XzIndex.uncompressedSize(ctx) } catch {
          if error.kind == .needsSeekable { break }
          info.findings.append(Finding(corrupt: error, id: error.finding ?? "compressed.truncated"))
        }
      case .zstd:
        size = Zstd.frameContentSize(ctx.head[...])
        sizeSource = "zstd frame header"
      case .lz4:
        size = Lz4.frameContentSize(ctx.head[...])
        sizeSource = "lz4 frame header"
      case .lz4Legacy, .bzip2: break
      }
    }
    fs.set("uncompressed-size", size)
    if size != nil { fs.set("uncompressed-size-from", sizeSource) }
    if whole {
      fs.set("streams", o.streams)
      if let t = o.trailing {
        if t.zeros {
          info.notes.append("\(t.count) zero bytes follow the compressed data (padding)")
        } else {
          info.findings.append(Finding("compressed.trailing-data", .warning, field: "trailing data", offset: t.offset,
                                       "\(t.count) bytes after the end of the \(codec.rawValue) data are not part of it; decompressors ignore or reject them"))
        }
      }
    }
    if let e = o.error, e.kind != .needsSeekable {
      info.findings.append(Finding(corrupt: e, id: e.finding ?? "compressed.truncated"))
    }
    info.formatSpecific = fs
    guard !head.bytes.isEmpty else { return info }
    let source = whole ? MemorySource(head.bytes, name: "inflated \(codec.rawValue)")
                       : MemorySource(head.bytes, name: "inflated \(codec.rawValue)", declaredSize: size ?? UInt64.max >> 2)
    guard let child = ctx.inspectNested(source) else {
      info.findings.append(depthLimit(ctx))
      return info
    }
    var result = child
    if !whole, !head.bytes.starts(with: Array("conectix".utf8)) {
      // Only the payload's head is inflated, so its tail is unknown. A fixed VHD is the one format
      // found by its tail alone (the footer in the last 512 bytes); its probe's question cannot
      // be answered from the head and must not turn the whole payload into "needs a seekable
      // file": the payload is described from its head, and check (which inflates all) sees the tail.
      let before = result.failures.count
      result.failures.removeAll { $0.probe == "vhd" && $0.error.kind == .needsSeekable }
      if result.failures.count != before {
        result.outcome = Inspector.resolve(result, source: source)
        info.notes.append("the payload's last bytes are not inflated by info, so a fixed VHD footer there is not looked for (imgtool check inflates and probes the whole payload)")
      }
    }
    if case var .identified(inner) = result.outcome {
      info.diskFormat = inner.diskFormat
      if size == nil, inner.probe == "raw" {
        // A raw payload's size is the uncompressed length, which is unknown here.
        inner.virtualSize = nil
        inner.notes.append("the uncompressed size is unknown without inflating everything (imgtool check does)")
        result.outcome = .identified(inner)
        result.size = 0
      }
      info.virtualSize = inner.virtualSize
    }
    info.children.append(ChildImage(name: head.outcome.gzipHeader?.name ?? "payload", offset: 0, size: size, result: result))
    return info
  }

  /// A payload left unprobed by the nesting depth limit is content nobody looked at: compressed
  /// archives nested this deep are no disk image a service takes, and could hide any format.
  static func depthLimit(_ ctx: ProbeContext) -> Finding {
    Finding("compressed.depth-limit", .unsafe, field: "payload",
            "the payload was not inflated or probed: the nesting depth limit (\(ctx.options.maxDepth)) was reached, so its format and safety are unknown",
            fix: "upload the innermost image with at most one compression layer")
  }
}
