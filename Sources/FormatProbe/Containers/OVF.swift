/// An OVF descriptor given on its own (`.ovf`, DMTF DSP0243): an XML Envelope naming disk files
/// that live next to it. imgtool reports what it declares and never opens those files.
///
/// Detected from the head: optional BOM and blanks, then `<`, and a root element whose local name is
/// `Envelope` (checked by parsing; any namespace, since OVF 0.9 and oVirt files use unusual ones).
public enum OVFProbe: FormatProbe {
  public static let id = "ovf"
  public static let role = ProbeRole.container

  static func looksLikeXML(_ head: [UInt8]) -> Bool {
    var p = 0
    if head.starts(with: [0xef, 0xbb, 0xbf]) { p = 3 }
    if head.starts(with: [0xff, 0xfe]) || head.starts(with: [0xfe, 0xff]) { return true }
    while p < head.count, head[p] == 0x20 || head[p] == 0x09 || head[p] == 0x0a || head[p] == 0x0d { p += 1 }
    guard p < head.count, head[p] == UInt8(ascii: "<") else { return false }
    // "Envelope" must appear in the head (the root element comes within the first 64 KiB).
    let needle = Array("Envelope".utf8)
    guard head.count >= needle.count else { return false }
    for i in p...(head.count - needle.count) where head[i] == needle[0] && Array(head[i..<(i + needle.count)]) == needle {
      return true
    }
    return false
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    guard looksLikeXML(ctx.head) else { return nil }
    guard ctx.size <= UInt64(OVFDescriptor.Limits.maxDescriptor) else {
      throw ImageError(.limitExceeded, format: "ovf", field: "descriptor", offset: 0,
                       "is \(ctx.size) bytes, limit \(OVFDescriptor.Limits.maxDescriptor)")
    }
    let bytes = ctx.size <= UInt64(ctx.head.count) ? ctx.head : try ctx.read(at: 0, count: Int(ctx.size))
    let doc: XMLDocument
    do {
      doc = try XML.parse(bytes)
    } catch {
      // Not well-formed: an OVF only if the root start tag was an Envelope.
      guard rootIsEnvelope(bytes) else { return nil }
      throw error
    }
    guard OVFDescriptor.isOVFEnvelope(doc) else { return nil }
    let d = try OVFDescriptor.from(doc)
    var info = describe(d, name: "the descriptor")
    for f in d.files {
      info.externalReferences.append(ExternalReference(kind: "ovf-file", name: f.href))
    }
    info.notes.append("an OVF descriptor names its disks as separate files; imgtool reports them as external references and never opens them")
    if d.disks.count == 1, let c = d.disks[0].capacity {
      info.virtualSize = c
      info.notes.append("virtual size is the capacity the descriptor declares for its one disk (not verified: the disk file is not read)")
    }
    return info
  }

  static func rootIsEnvelope(_ bytes: [UInt8]) -> Bool {
    // The first start tag that is not <?, <!: its local name.
    var p = 0
    let b = XML.normalize(Array(bytes.prefix(ProbeContext.headSize)))
    while p < b.count {
      guard let lt = b[p...].firstIndex(of: UInt8(ascii: "<")) else { return false }
      p = lt + 1
      guard p < b.count else { return false }
      if b[p] == UInt8(ascii: "?") || b[p] == UInt8(ascii: "!") { continue }
      var e = p
      while e < b.count, !XML.Parser.isNameEnd(b[e]) { e += 1 }
      let name = Text.utf8(b[p..<e])
      guard name == "Envelope" || name.hasSuffix(":Envelope") else { return false }
      // And OVF markup somewhere in the head (a namespace or section name), unlike a SOAP envelope.
      let lower = b.map { $0 | 0x20 }
      let ovf = Array("ovf".utf8)
      return lower.indices.dropLast(2).contains { lower[$0] == ovf[0] && lower[$0 + 1] == ovf[1] && lower[$0 + 2] == ovf[2] }
    }
    return false
  }

  /// The shared description of a descriptor (standalone or inside an OVA).
  static func describe(_ d: OVFDescriptor, name: String) -> ImageInfo {
    let agreed = d.agreedDiskFormat
    var info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: agreed?.0 ?? .raw, subformat: agreed?.1)
    info.containerFormat = .ovf
    info.formatSpecific = d.json
    info.findings = d.findings(descriptorName: name)
    if agreed == nil {
      info.notes.append(d.disks.isEmpty ? "the descriptor declares no disk, so no disk format applies (raw is reported)"
                                        : "the descriptor's disks do not share one format URI the image service knows; raw is reported")
    }
    if let ns = d.namespace, !OVFDescriptor.envelopeNamespaces.contains(ns) {
      info.notes.append("the Envelope's namespace '\(ns)' is not a DMTF, VMware 0.9 or oVirt OVF namespace")
    } else if d.namespace == nil {
      info.notes.append("the Envelope element has no namespace (pre-DMTF OVF 0.9 style)")
    }
    if let enc = d.declaredEncoding, enc.lowercased().hasPrefix("utf-16") {
      info.notes.append("the XML declaration says \(enc), but the bytes were read as they are (ASCII-compatible)")
    }
    info.notes.append("qemu-img has no OVF driver: it would read the file as raw bytes")
    return info
  }
}
