/// VMware VMDK: hosted sparse extents (`KDMV`, monolithicSparse and streamOptimized), legacy ESX
/// sparse extents (`COWD`, vmfsSparse) and text descriptor files (monolithicFlat, twoGbMaxExtent*,
/// vmfs, fullDevice, ...).
///
/// References: VMware "Virtual Disk Format 1.1" technical note (sections 2-4), qemu block/vmdk.c,
/// the image service's format inspector (oslo.utils `format_inspector.VMDKInspector`).
///
/// Extent files named by a descriptor are NEVER opened: they are reported as external references.
public enum VMDKProbe: FormatProbe {
  public static let id = "vmdk"
  public static let role = ProbeRole.image
  static let format = "vmdk"

  public enum Limits {
    /// qemu refuses grains above 0x200000 sectors (1 GiB), "Invalid granularity" (vmdk_add_extent).
    public static let maxGrainSectors: UInt64 = 0x200000
    /// The spec fixes numGTEsPerGT at 512; qemu refuses more ("L2 table size too big").
    public static let maxGTEsPerGT: UInt32 = 512
    /// qemu refuses grain directories over 512 MiB of 8-byte in-memory entries ("L1 size too big"):
    /// 64 Mi entries.
    public static let maxGDEntries: UInt64 = (512 << 20) / 8
    /// Descriptor text: qemu reads at most 1 MiB - 1 (vmdk_read_desc); so does the image service.
    public static let maxDescriptorBytes = VMDKDescriptor.Limits.maxBytes
    /// Findings listed per kind (extent paths, unknown lines): the rest are counted in one message.
    public static let maxFindingsPerKind = 16
  }

  /// Sparse extent header flags (spec 2.2 "flags").
  enum Flag {
    /// Bit 0: the four newline characters are valid (detects text-mode transfers).
    static let newlineTest: UInt32 = 1 << 0
    /// Bit 1: a redundant grain directory is used.
    static let redundantGT: UInt32 = 1 << 1
    /// Bit 2: grain table entry 1 means "zeroed grain" (qemu VMDK4_FLAG_ZERO_GRAIN).
    static let zeroedGrainGTE: UInt32 = 1 << 2
    /// Bit 16: grains are compressed.
    static let compressed: UInt32 = 1 << 16
    /// Bit 17: metadata and grains are preceded by markers (streamOptimized).
    static let markers: UInt32 = 1 << 17
  }

  /// gdOffset value meaning "the grain directory is given by the footer at the end".
  static let gdAtEnd: UInt64 = 0xffff_ffff_ffff_ffff
  static let magicKDMV: [UInt8] = Array("KDMV".utf8)
  static let magicCOWD: [UInt8] = Array("COWD".utf8)

  /// Stream marker types (spec 2.3 "Stream-Optimized Compressed Sparse Extents").
  enum Marker {
    static let endOfStream: UInt32 = 0
    static let grainTable: UInt32 = 1
    static let grainDirectory: UInt32 = 2
    static let footer: UInt32 = 3
  }

  /// Hosted sparse extent header, 512 bytes little-endian (spec 2.2 "SparseExtentHeader"):
  ///
  /// | off | size | field |
  /// |----:|----:|---|
  /// | 0 | 4 | magicNumber `KDMV` |
  /// | 4 | 4 | version (1, 2 or 3) |
  /// | 8 | 4 | flags |
  /// | 12 | 8 | capacity (sectors) |
  /// | 20 | 8 | grainSize (sectors) |
  /// | 28 | 8 | descriptorOffset (sectors) |
  /// | 36 | 8 | descriptorSize (sectors) |
  /// | 44 | 4 | numGTEsPerGT |
  /// | 48 | 8 | rgdOffset (sectors) |
  /// | 56 | 8 | gdOffset (sectors; all-ones = in the footer) |
  /// | 64 | 8 | overHead (sectors) |
  /// | 72 | 1 | uncleanShutdown |
  /// | 73 | 4 | singleEndLineChar `\n`, nonEndLineChar ` `, doubleEndLineChar1 `\r`, doubleEndLineChar2 `\n` |
  /// | 77 | 2 | compressAlgorithm (0 none, 1 deflate) |
  /// | 79 | 433 | pad |
  public struct SparseHeader: Sendable, Equatable {
    public static let size = 512
    public var version: UInt32
    public var flags: UInt32
    public var capacity: UInt64
    public var grainSize: UInt64
    public var descriptorOffset: UInt64
    public var descriptorSize: UInt64
    public var numGTEsPerGT: UInt32
    public var rgdOffset: UInt64
    public var gdOffset: UInt64
    public var overHead: UInt64
    public var uncleanShutdown: UInt8
    public var newlineChars: [UInt8]
    public var compressAlgorithm: UInt16
    /// Absolute offset of the header in the input.
    public var base: UInt64

    static func decode(_ r: ByteReader, at o: Int) throws(ImageError) -> SparseHeader {
      var r = r
      try r.seek(to: o, "header")
      guard r.matches(VMDKProbe.magicKDMV, at: o) else {
        throw ImageError(.invalidField, format: "vmdk", field: "magicNumber", offset: r.offset, "is not KDMV")
      }
      try r.skip(4, "magicNumber")
      let version = try r.u32LE("version")
      let flags = try r.u32LE("flags")
      let capacity = try r.u64LE("capacity")
      let grainSize = try r.u64LE("grainSize")
      let descriptorOffset = try r.u64LE("descriptorOffset")
      let descriptorSize = try r.u64LE("descriptorSize")
      let numGTEsPerGT = try r.u32LE("numGTEsPerGT")
      let rgdOffset = try r.u64LE("rgdOffset")
      let gdOffset = try r.u64LE("gdOffset")
      let overHead = try r.u64LE("overHead")
      let unclean = try r.u8("uncleanShutdown")
      let nl = Array(try r.bytes(4, "newline characters"))
      let algo = try r.u16LE("compressAlgorithm")
      try r.skip(433, "pad")
      return SparseHeader(version: version, flags: flags, capacity: capacity, grainSize: grainSize,
                          descriptorOffset: descriptorOffset, descriptorSize: descriptorSize,
                          numGTEsPerGT: numGTEsPerGT, rgdOffset: rgdOffset, gdOffset: gdOffset, overHead: overHead,
                          uncleanShutdown: unclean, newlineChars: nl, compressAlgorithm: algo,
                          base: r.base &+ UInt64(o))
    }

    public var compressed: Bool { flags & Flag.compressed != 0 }
    public var hasMarkers: Bool { flags & Flag.markers != 0 }
    public var usesRedundantGD: Bool { flags & Flag.redundantGT != 0 }
    public var zeroedGrains: Bool { flags & Flag.zeroedGrainGTE != 0 }

    func field(_ off: UInt64) -> UInt64 { base &+ off }

    /// Validates the fields everything else is computed from; returns the grain directory's
    /// entry count. Throws for values qemu refuses too (it cannot open such a file).
    func validate() throws(ImageError) -> UInt64 {
      guard (1...3).contains(version) else {
        throw ImageError(.unsupported, format: "vmdk", field: "version", offset: field(4),
                         "is \(version); hosted sparse extents have version 1, 2 or 3", finding: "vmdk.version")
      }
      guard Checked.isPowerOfTwo(grainSize), grainSize <= Limits.maxGrainSectors else {
        throw ImageError(.invalidField, format: "vmdk", field: "grainSize", offset: field(20),
                         "is \(grainSize) sectors; it must be a power of two of at most \(Limits.maxGrainSectors)",
                         finding: "vmdk.grain-size")
      }
      guard numGTEsPerGT >= 1, numGTEsPerGT <= Limits.maxGTEsPerGT else {
        throw ImageError(.invalidField, format: "vmdk", field: "numGTEsPerGT", offset: field(44),
                         "is \(numGTEsPerGT); the specification fixes it at 512 (qemu accepts 1 to 512)",
                         finding: "vmdk.gt-size")
      }
      _ = try Checked.mul(capacity, 512, "vmdk", "capacity", at: field(12))
      let gtCoverage = grainSize * UInt64(numGTEsPerGT)  // both bounded above: no overflow
      let entries = Checked.ceilDiv(capacity, gtCoverage)
      guard entries <= Limits.maxGDEntries else {
        throw ImageError(.limitExceeded, format: "vmdk", field: "capacity", offset: field(12),
                         "needs a grain directory of \(entries) entries, limit \(Limits.maxGDEntries) (qemu's)",
                         finding: "vmdk.gd-size")
      }
      return entries
    }
  }

  /// Legacy ESX 2.x sparse extent (`COWD`, qemu VMDK3Header), little-endian:
  ///
  /// | off | size | field |
  /// |----:|----:|---|
  /// | 0 | 4 | magic `COWD` |
  /// | 4 | 4 | version |
  /// | 8 | 4 | flags |
  /// | 12 | 4 | numSectors (capacity) |
  /// | 16 | 4 | grainSize (sectors) |
  /// | 20 | 4 | gdOffset (sectors) |
  /// | 24 | 4 | numGDEntries |
  /// | 28 | 4 | freeSector |
  public struct COWDHeader: Sendable, Equatable {
    public var version: UInt32
    public var flags: UInt32
    public var numSectors: UInt32
    public var grainSize: UInt32
    public var gdOffset: UInt32
    public var numGDEntries: UInt32
    public var freeSector: UInt32
    /// Grain tables of COWD extents have a fixed 4096 entries (qemu vmdk_open_vmfs_sparse).
    public static let gtEntries: UInt64 = 4096

    static func decode(_ r: ByteReader) throws(ImageError) -> COWDHeader {
      var r = r
      try r.skip(4, "magic")
      return COWDHeader(version: try r.u32LE("version"), flags: try r.u32LE("flags"),
                        numSectors: try r.u32LE("numSectors"), grainSize: try r.u32LE("grainSize"),
                        gdOffset: try r.u32LE("gdOffset"), numGDEntries: try r.u32LE("numGDEntries"),
                        freeSector: try r.u32LE("freeSector"))
    }
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let r = ctx.headReader(format)
    if r.matches(magicKDMV, at: 0) { return try sparse(ctx) }
    if r.matches(magicCOWD, at: 0) { return try cowd(ctx) }
    if let m = try? r.u64LE(at: 0, "magic"), m == seSparseMagic, let v = try? r.u64LE(at: 8, "version"),
       v == seSparseVersion
    {
      return try seSparse(ctx)
    }
    if VMDKDescriptor.looksLikeDescriptor(ctx.head[...]) { return try descriptorFile(ctx) }
    return nil
  }

  // MARK: hosted sparse extents

  /// The header qemu and VMware act on: the footer's when gdOffset says GD_AT_END.
  struct Sparse {
    var header: SparseHeader
    var primary: SparseHeader
    var footer: SparseHeader?
    var gdEntries: UInt64
  }

  /// Decodes the header at 0 and, for GD_AT_END, the footer 1024 bytes before the end
  /// (footer marker, footer header, end-of-stream marker; spec 2.3).
  static func readSparse(_ ctx: ProbeContext, findings: inout [Finding]) throws(ImageError) -> Sparse {
    let head = try ctx.reader(at: 0, count: SparseHeader.size, format, "header")
    let primary = try SparseHeader.decode(head, at: 0)
    var header = primary
    var footerHeader: SparseHeader?
    if primary.gdOffset == gdAtEnd {
      let end = ctx.size & ~511
      guard end >= 1536 + 512 else {
        throw ImageError(.truncated, format: format, field: "footer", offset: 0,
                         "gdOffset is GD_AT_END but the file (\(ctx.size) bytes) has no room for a footer",
                         finding: "vmdk.footer-invalid")
      }
      let f = try ctx.reader(at: end - 1536, count: 1536, format, "footer")
      let markerVal = try f.u64LE(at: 0, "footer marker value")
      let markerSize = try f.u32LE(at: 8, "footer marker size")
      let markerType = try f.u32LE(at: 12, "footer marker type")
      let eosVal = try f.u64LE(at: 1024, "end-of-stream marker value")
      let eosSize = try f.u32LE(at: 1032, "end-of-stream marker size")
      let eosType = try f.u32LE(at: 1036, "end-of-stream marker type")
      guard markerSize == 0, markerType == Marker.footer, f.matches(magicKDMV, at: 512) else {
        throw ImageError(.invalidField, format: format, field: "footer marker", offset: end - 1536,
                         "is not a footer marker followed by a KDMV header (value \(markerVal), size \(markerSize), type \(markerType)); gdOffset says the grain directory is in the footer",
                         finding: "vmdk.footer-invalid")
      }
      guard eosVal == 0, eosSize == 0, eosType == Marker.endOfStream else {
        throw ImageError(.invalidField, format: format, field: "end-of-stream marker", offset: end - 512,
                         "is not an end-of-stream marker (value \(eosVal), size \(eosSize), type \(eosType))",
                         finding: "vmdk.footer-invalid")
      }
      let fh = try SparseHeader.decode(f, at: 512)
      guard fh.gdOffset != gdAtEnd else {
        throw ImageError(.invalidField, format: format, field: "footer gdOffset", offset: fh.base + 56,
                         "is GD_AT_END again: the footer points at another footer", finding: "vmdk.footer-invalid")
      }
      footerHeader = fh
      header = fh
      compareFooter(primary, fh, &findings)
    }
    let entries = try header.validate()
    return Sparse(header: header, primary: primary, footer: footerHeader, gdEntries: entries)
  }

  /// The footer takes precedence for qemu and VMware; a streaming reader (the image service) has
  /// only the header. Where they disagree, two readers see two disks.
  static func compareFooter(_ h: SparseHeader, _ f: SparseHeader, _ findings: inout [Finding]) {
    if h.descriptorOffset != f.descriptorOffset || h.descriptorSize != f.descriptorSize {
      findings.append(Finding("vmdk.footer-descriptor", .unsafe, field: "descriptorOffset", offset: f.base + 28,
                              "the footer names a different descriptor (sector \(f.descriptorOffset), \(f.descriptorSize) sectors) than the header (sector \(h.descriptorOffset), \(h.descriptorSize) sectors): a streaming reader and qemu read different descriptors",
                              fix: "re-export the disk (qemu-img convert -O vmdk -o subformat=streamOptimized)"))
    }
    var differ: [String] = []
    if h.version != f.version { differ.append("version \(h.version)/\(f.version)") }
    if h.capacity != f.capacity { differ.append("capacity \(h.capacity)/\(f.capacity)") }
    if h.grainSize != f.grainSize { differ.append("grainSize \(h.grainSize)/\(f.grainSize)") }
    if h.numGTEsPerGT != f.numGTEsPerGT { differ.append("numGTEsPerGT \(h.numGTEsPerGT)/\(f.numGTEsPerGT)") }
    if h.flags != f.flags { differ.append("flags \(hex(h.flags))/\(hex(f.flags))") }
    if h.compressAlgorithm != f.compressAlgorithm {
      differ.append("compressAlgorithm \(h.compressAlgorithm)/\(f.compressAlgorithm)")
    }
    if !differ.isEmpty {
      findings.append(Finding("vmdk.footer-mismatch", .unsafe, field: "footer", offset: f.base,
                              "the footer header disagrees with the header at 0 (header/footer: \(differ.joined(separator: ", "))); qemu uses the footer, a streaming reader the header"))
    }
  }

  static func sparse(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo {
    var findings: [Finding] = []
    let s = try readSparse(ctx, findings: &findings)
    let h = s.header
    let virtualSize = h.capacity * 512  // checked in validate()
    var info = ImageInfo(probe: id, qemuFormat: "vmdk", diskFormat: .vmdk, virtualSize: virtualSize)
    info.clusterSize = h.grainSize * 512
    info.dirty = h.uncleanShutdown != 0

    if h.flags & Flag.newlineTest != 0, h.newlineChars != [0x0a, 0x20, 0x0d, 0x0a] {
      findings.append(Finding("vmdk.newline-corruption", .corrupt, field: "singleEndLineChar", offset: h.base + 73,
                              "the newline-detection characters are \(h.newlineChars.map { hex($0) }.joined(separator: " ")), not 0xa 0x20 0xd 0xa: the file went through a text-mode transfer that rewrote line ends"))
    }
    if h.uncleanShutdown != 0 {
      findings.append(Finding("vmdk.unclean-shutdown", .warning, field: "uncleanShutdown", offset: h.base + 72,
                              "the disk was not closed cleanly: grain tables may not match the grains written"))
    }
    if h.compressed, h.compressAlgorithm != 1 {
      findings.append(Finding("vmdk.compress-algorithm", .corrupt, field: "compressAlgorithm", offset: h.base + 77,
                              "grains are flagged compressed but compressAlgorithm is \(h.compressAlgorithm) (only 1, deflate, exists)"))
    }
    if s.gdEntries > 0, h.gdOffset == 0 {
      findings.append(Finding("vmdk.gd-out-of-range", .corrupt, field: "gdOffset", offset: h.base + 56,
                              "gdOffset is 0 but the disk has \(s.gdEntries) grain tables"))
    }

    // The embedded descriptor.
    var desc: VMDKDescriptor?
    var pendingReferences: [ExternalReference] = []
    if h.descriptorOffset != 0 {
      let d = try embeddedDescriptor(ctx, h, &findings, &pendingReferences)
      // qemu writes the extents of a twoGbMaxExtentSparse disk with an all-NUL descriptor region.
      desc = d.isEmpty ? nil : d
    }
    if desc == nil {
      findings.append(Finding("vmdk.no-descriptor", .unsafe, field: "descriptorOffset", offset: h.base + 28,
                              "this sparse extent has no (or an empty) embedded descriptor: it is one extent of a multi-file disk (twoGbMaxExtentSparse), whose descriptor names it; qemu cannot open it alone"))
    }

    var data = JSONObject()
    if let desc {
      data.set("cid", desc.cid.map { UInt64($0) })
      data.set("parent-cid", desc.parentCID.map { UInt64($0) })
      data.set("create-type", desc.createType)
    }
    var extent = JSONObject()
    if h.compressed && h.compressAlgorithm == 1 { extent.set("compressed", true) }
    extent.set("virtual-size", virtualSize)
    extent.set("filename", ctx.source.name)
    extent.set("cluster-size", h.grainSize * 512)
    extent.set("format", "")
    data.set("extents", JSON.array([extent.json]))
    data.set("version", UInt64(h.version))
    addSparseKeys(h, s, into: &data)
    if let desc { describe(desc, into: &data) }
    info.formatSpecific = data

    if let desc {
      info.subformat = desc.createType
      embeddedFindings(desc, h, virtualSize: virtualSize, &info, &findings)
    } else {
      info.subformat = "sparseExtent"
    }
    info.externalReferences += pendingReferences
    if s.footer != nil {
      info.notes.append("gdOffset is GD_AT_END: the grain directory is given by the footer at the end of the file (the layout VMware writes when streaming); the footer's header was used")
    }
    info.findings = findings
    return info
  }

  static func addSparseKeys(_ h: SparseHeader, _ s: Sparse, into data: inout JSONObject) {
    data.set("flags", UInt64(h.flags))
    data.set("grain-size", h.grainSize)
    data.set("num-gtes-per-gt", UInt64(h.numGTEsPerGT))
    data.set("gd-entries", s.gdEntries)
    data.set("gd-offset", h.gdOffset)
    if h.usesRedundantGD { data.set("rgd-offset", h.rgdOffset) }
    data.set("overhead", h.overHead)
    data.set("descriptor-offset", h.descriptorOffset)
    data.set("descriptor-size", h.descriptorSize)
    data.set("unclean-shutdown", h.uncleanShutdown != 0)
    data.set("compress-algorithm", UInt64(h.compressAlgorithm))
    data.set("markers", h.hasMarkers)
    data.set("zeroed-grains", h.zeroedGrains)
    data.set("footer", s.footer != nil)
  }

  /// Reads the descriptor at descriptorOffset: descriptorSize sectors, capped at 1 MiB - 1.
  static func embeddedDescriptor(_ ctx: ProbeContext, _ h: SparseHeader, _ findings: inout [Finding],
                                 _ pendingReferences: inout [ExternalReference]) throws(ImageError) -> VMDKDescriptor
  {
    let offset = try Checked.mul(h.descriptorOffset, 512, format, "descriptorOffset", at: h.base + 28)
    let declared = try Checked.mul(h.descriptorSize, 512, format, "descriptorSize", at: h.base + 36)
    if declared > UInt64(Limits.maxDescriptorBytes) {
      findings.append(Finding("vmdk.descriptor-too-large", .corrupt, field: "descriptorSize", offset: h.base + 36,
                              "declares a \(declared)-byte descriptor; qemu and the image service read at most \(Limits.maxDescriptorBytes) bytes of it"))
    }
    if h.descriptorOffset != 1 {
      findings.append(Finding("vmdk.descriptor-offset", .unsafe, field: "descriptorOffset", offset: h.base + 28,
                              "the descriptor is at sector \(h.descriptorOffset), not 1: qemu still reads the CID and parent hint from sector 1 (vmdk_read_cid, vmdk_parent_open), VMware from the header's offset, and the image service's inspector refuses the file"))
      // What qemu would take as the parent hint from its fixed 10 KiB window at sector 1.
      if ctx.size > 512, let window = try? ctx.read(at: 512, count: Int(min(ctx.size - 512, 10240))) {
        let text = Array(window.prefix { $0 != 0 })
        if let hint = VMDKDescriptor.qemuValue(text, "parentFileNameHint"), !hint.isEmpty {
          findings.append(Finding("vmdk.descriptor-ambiguous", .unsafe, field: "descriptor", offset: 512,
                                  "qemu reads parentFileNameHint \"\(hint)\" from sector 1, which is not this file's descriptor"))
          pendingReferences.append(ExternalReference(kind: "parent-hint", name: hint, offset: 512))
        }
      }
    }
    guard declared > 0 else {
      throw ImageError(.invalidField, format: format, field: "descriptorSize", offset: h.base + 36,
                       "is 0 but descriptorOffset is \(h.descriptorOffset)", finding: "vmdk.descriptor-size")
    }
    let count = Int(min(declared, UInt64(Limits.maxDescriptorBytes)))
    let r = try ctx.reader(at: offset, count: count, format, "descriptor")
    let bytes = r.bytes[...]
    // qemu ignores descriptorSize and reads up to 1 MiB - 1 from descriptorOffset, stopping at
    // the first NUL. When the declared region is full text, qemu's descriptor runs on.
    if bytes.firstIndex(of: 0) == nil, count < Limits.maxDescriptorBytes, offset + UInt64(count) < ctx.size {
      let after = try ctx.read(at: offset + UInt64(count), count: 1)
      if let b = after.first, b != 0 {
        findings.append(Finding("vmdk.descriptor-overrun", .unsafe, field: "descriptorSize", offset: offset + UInt64(count),
                                "the descriptor fills its \(count)-byte region without a NUL and the next byte is not NUL: qemu reads on past the region (up to 1 MiB - 1), so it and a reader honouring descriptorSize see different descriptors"))
      }
    }
    let d = try VMDKDescriptor.parse(bytes, base: offset)
    return d
  }

  /// Findings for a descriptor embedded in a sparse extent: the extent naming this file is normal;
  /// anything else it names is external.
  static func embeddedFindings(_ d: VMDKDescriptor, _ h: SparseHeader, virtualSize: UInt64, _ info: inout ImageInfo,
                               _ findings: inout [Finding])
  {
    commonFindings(d, &info, &findings)
    let type = d.createType?.lowercased()
    if type != "monolithicsparse" && type != "streamoptimized" {
      findings.append(Finding("vmdk.create-type", .unsafe, field: "createType",
                              "a sparse extent with an embedded descriptor whose createType is \(d.createType.map { "\"\($0)\"" } ?? "missing"), not monolithicSparse or streamOptimized: the image service refuses it and readers differ on how to use it"))
    }
    if type == "streamoptimized", !(h.compressed && h.hasMarkers) {
      info.notes.append("createType is streamOptimized but the header does not flag compressed grains with markers")
    }
    guard let selfExtent = d.extents.first else {
      findings.append(Finding("vmdk.no-extents", .unsafe, field: "descriptor",
                              "the embedded descriptor lists no extent: the image service refuses it"))
      return
    }
    for (i, e) in d.extents.enumerated() {
      let concerns = e.filename.map(pathConcerns) ?? []
      if i > 0, let name = e.filename {
        info.externalReferences.append(ExternalReference(kind: "extent", name: name, offset: e.lineOffset))
      }
      if i == 0, concerns.isEmpty, e.type == "SPARSE" { continue }
      if i == 0 || i <= Limits.maxFindingsPerKind {
        if !concerns.isEmpty {
          findings.append(Finding("vmdk.extent-path", .unsafe, field: "extent", offset: e.lineOffset,
                                  "extent \(i + 1) names \"\(e.filename ?? "")\" (\(concerns.joined(separator: ", "))): a reader that honours the descriptor would open that path"))
        }
      }
    }
    if d.extents.count > 1 || selfExtent.type != "SPARSE" {
      findings.append(Finding("vmdk.multiple-extents", .unsafe, field: "extent", offset: selfExtent.lineOffset,
                              "the embedded descriptor lists \(d.extents.count) extent(s) (first: \(selfExtent.type)); a monolithic sparse disk has exactly one SPARSE extent, itself. qemu reads only this file, VMware would open the others"))
    }
    if let total = d.extentBytes, total != virtualSize {
      findings.append(Finding("vmdk.capacity-mismatch", .corrupt, field: "capacity", offset: h.base + 12,
                              "the header's capacity is \(virtualSize) bytes but the descriptor's extents add up to \(total) bytes; qemu uses the header's"))
      info.notes.append("virtual size is the sparse header's capacity (\(virtualSize) bytes); the descriptor's extents say \(total) bytes")
    }
  }

  /// Findings every descriptor gets: parent hint, unknown lines, encoding, change tracking.
  static func commonFindings(_ d: VMDKDescriptor, _ info: inout ImageInfo, _ findings: inout [Finding]) {
    if let hint = d.parentFileNameHint, !hint.isEmpty {
      info.backingFilename = hint
      info.backingFormat = "vmdk"
      info.externalReferences.append(ExternalReference(kind: "parent-hint", name: hint, offset: d.parentFileNameHintOffset))
      findings.append(Finding("vmdk.parent-hint", .unsafe, field: "parentFileNameHint", offset: d.parentFileNameHintOffset,
                              "the disk is a delta of parent \"\(hint)\": reading it needs another file",
                              fix: "flatten it: qemu-img convert -O vmdk (or qcow2) with the parent present"))
    } else if let p = d.parentCID, p != 0xffff_ffff {
      info.notes.append("parentCID is \(String(p, radix: 16)) but no parentFileNameHint is given")
    }
    if let path = d.changeTrackPath, !path.isEmpty {
      info.externalReferences.append(ExternalReference(kind: "change-tracking", name: path))
      findings.append(Finding("vmdk.change-tracking", .warning, field: "changeTrackPath",
                              "the descriptor names a change-tracking file \"\(path)\"; it holds no disk data and is not opened"))
    }
    let disagreements = d.disagreements
    if !disagreements.isEmpty {
      findings.append(Finding("vmdk.descriptor-ambiguous", .unsafe, field: "descriptor",
                              "readers disagree about this descriptor: \(disagreements.joined(separator: "; "))"))
    }
    if let hint = d.otherReaders.qemuParentHint, !hint.isEmpty, hint != d.parentFileNameHint {
      // qemu would open this as the backing file.
      info.externalReferences.append(ExternalReference(kind: "parent-hint", name: hint))
    }
    for (off, line, why) in d.unknownLines {
      findings.append(Finding("vmdk.descriptor-line", .unsafe, field: "descriptor", offset: off,
                              "descriptor line \"\(line)\" \(why): the image service's allow-list refuses it and readers may disagree on its meaning"))
    }
    if d.hasNonASCII {
      findings.append(Finding("vmdk.descriptor-encoding", .warning, field: "descriptor",
                              "the descriptor holds non-ASCII text (encoding \(d.encoding ?? "not declared")); the image service's inspector decodes descriptors as ASCII and refuses this one"))
    }
  }

  /// The descriptor's facts in format-specific data (imgtool's own keys).
  static func describe(_ d: VMDKDescriptor, into data: inout JSONObject) {
    data.set("descriptor-version", d.version)
    data.set("encoding", d.encoding)
    data.set("native-snapshot", d.isNativeSnapshot)
    data.set("parent-file-name-hint", d.parentFileNameHint)
    data.set("adapter-type", d.ddb("adapterType"))
    data.set("hw-version", d.ddb("virtualHWVersion"))
    var geometry = JSONObject()
    for k in ["cylinders", "heads", "sectors"] {
      if let v = d.ddb("geometry." + k) { geometry.set(k, UInt64(v).map { JSON.uint($0) } ?? .string(v)) }
    }
    if !geometry.isEmpty { data.set("geometry", geometry.json) }
    data.set("uuid", d.ddb("uuid") ?? d.ddb("uuid.image"))
    data.set("long-content-id", d.ddb("longContentID"))
    data.set("tools-version", d.ddb("toolsVersion"))
    if let t = d.ddb("thinProvisioned") { data.set("thin-provisioned", t == "1" || t.lowercased() == "true") }
    if !d.ddb.isEmpty {
      var ddb = JSONObject()
      for (k, v) in d.ddb { ddb.set(k, v) }
      data.set("ddb", ddb.json)
    }
  }

  /// Why a file name is a concern beyond "it is another file": absolute, `..`, device, URL.
  static func pathConcerns(_ name: String) -> [String] {
    var c: [String] = []
    let lower = name.lowercased()
    let u = Array(name.utf8)
    if lower.contains("://") { c.append("a URL") }
    if lower.hasPrefix("/dev/") || lower.hasPrefix("\\\\.\\") || lower.hasPrefix("//./") || lower.hasPrefix("\\\\?\\") {
      c.append("a device")
    } else if name.hasPrefix("\\\\") || name.hasPrefix("//") {
      c.append("a network (UNC) path")
    }
    if name.hasPrefix("/") || name.hasPrefix("\\")
      || (u.count >= 2 && u[1] == UInt8(ascii: ":") && ((u[0] | 0x20) >= 0x61 && (u[0] | 0x20) <= 0x7a))
    {
      c.append("an absolute path")
    }
    let parts = name.split(whereSeparator: { $0 == "/" || $0 == "\\" })
    if parts.contains(where: { $0 == ".." }) { c.append("climbs out with ..") }
    if c.isEmpty, name.contains("/") || name.contains("\\") { c.append("a path into another directory") }
    if name.isEmpty { c.append("an empty name") }
    return c
  }

  // MARK: descriptor files

  static func descriptorFile(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo {
    let count = Int(min(ctx.size, UInt64(Limits.maxDescriptorBytes)))
    let bytes = try ctx.read(at: 0, count: count)
    let d = try VMDKDescriptor.parse(bytes[...], base: 0)
    var info = ImageInfo(probe: id, qemuFormat: "vmdk", diskFormat: .vmdk, subformat: d.createType)
    info.dirty = false  // a descriptor has no unclean-shutdown flag; qemu reports false
    var findings: [Finding] = []
    info.virtualSize = d.extentBytes
    if d.extentBytes == nil {
      findings.append(Finding("vmdk.capacity-mismatch", .corrupt, field: "extent",
                              "the extents' sizes overflow 64 bits"))
    }
    if ctx.size > UInt64(Limits.maxDescriptorBytes) {
      findings.append(Finding("vmdk.descriptor-too-large", .corrupt, field: "descriptor",
                              "the descriptor file is \(ctx.size) bytes; qemu and the image service read only the first \(Limits.maxDescriptorBytes)"))
    }
    if let nul = bytes.firstIndex(of: 0), bytes[nul...].contains(where: { $0 != 0 }) {
      findings.append(Finding("vmdk.descriptor-line", .unsafe, field: "descriptor", offset: UInt64(nul),
                              "the text ends with a NUL at \(hex(nul)) but bytes follow: qemu ignores them, other readers may not"))
    }
    commonFindings(d, &info, &findings)
    let extentViews = d.extentDisagreements
    if !extentViews.isEmpty {
      findings.append(Finding("vmdk.descriptor-ambiguous", .unsafe, field: "extent",
                              "readers disagree about the extents: \(extentViews.joined(separator: "; "))"))
      info.notes.append("the virtual size counts every extent, as VMware does; qemu would use the RW extents only")
    }
    if d.createType == nil {
      findings.append(Finding("vmdk.create-type", .unsafe, field: "createType",
                              "the descriptor has no createType: readers differ on how to use its extents"))
    }
    if d.extents.isEmpty {
      findings.append(Finding("vmdk.no-extents", .unsafe, field: "descriptor", "the descriptor lists no extent"))
    }
    var listed = 0
    var extents: [JSON] = []
    for e in d.extents {
      if let name = e.filename {
        info.externalReferences.append(ExternalReference(kind: "extent", name: name, offset: e.lineOffset))
        listed += 1
        if listed <= Limits.maxFindingsPerKind {
          let concerns = pathConcerns(name)
          let what = concerns.isEmpty ? "another file" : concerns.joined(separator: ", ")
          findings.append(Finding("vmdk.extent-path", .unsafe, field: "extent", offset: e.lineOffset,
                                  "the descriptor's \(e.type) extent is \"\(name)\" (\(what)): the disk's data lives outside this file, which imgtool never opens",
                                  fix: "upload a single-file disk: qemu-img convert -O vmdk -o subformat=streamOptimized (or monolithicSparse)"))
        }
      }
      var x = JSONObject()
      x.set("virtual-size", e.sectors &* 512)
      x.set("filename", e.filename)
      x.set("format", e.type)
      x.set("access", e.access)
      x.set("offset", e.offset)
      extents.append(x.json)
    }
    if listed > Limits.maxFindingsPerKind {
      findings.append(Finding("vmdk.extent-path", .unsafe, field: "extent",
                              "\(listed - Limits.maxFindingsPerKind) more extents name other files"))
    }
    if d.extents.count > 1 {
      findings.append(Finding("vmdk.multiple-extents", .unsafe, field: "extent",
                              "the descriptor splits the disk over \(d.extents.count) extents"))
    }
    var data = JSONObject()
    data.set("cid", d.cid.map { UInt64($0) })
    data.set("parent-cid", d.parentCID.map { UInt64($0) })
    data.set("create-type", d.createType)
    data.set("extents", JSON.array(extents))
    describe(d, into: &data)
    info.formatSpecific = data
    info.notes.append("a descriptor-only VMDK: the virtual size is the sum of its extents' sizes; the extent files are never opened")
    info.findings = findings
    return info
  }

  // MARK: seSparse

  /// ESXi space-efficient sparse extent: constant header magic and version (qemu
  /// VMDKSESparseConstHeader: magic, version, capacity, grain_size, ... all u64 little-endian).
  static let seSparseMagic: UInt64 = 0xcafe_babe
  static let seSparseVersion: UInt64 = 0x2_0000_0001

  static func seSparse(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo {
    let r = try ctx.reader(at: 0, count: 32, format, "seSparse header")
    let capacity = try r.u64LE(at: 16, "capacity")
    let grain = try r.u64LE(at: 24, "grain_size")
    let bytes = try Checked.mul(capacity, 512, format, "capacity", at: 16)
    var info = ImageInfo(probe: id, qemuFormat: "vmdk", diskFormat: .vmdk, subformat: "seSparse", virtualSize: bytes)
    if Checked.isPowerOfTwo(grain), grain <= Limits.maxGrainSectors { info.clusterSize = grain * 512 }
    var data = JSONObject()
    data.set("create-type", "seSparse")
    data.set("grain-size", grain)
    info.formatSpecific = data
    info.findings.append(Finding("vmdk.no-descriptor", .unsafe, field: "magic",
                                 "an ESXi seSparse extent: the snapshot delta of another disk, opened only through the descriptor that names it and its parent"))
    return info
  }

  // MARK: COWD

  static func cowd(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo {
    let r = try ctx.reader(at: 0, count: 32, format, "COWD header")
    let h = try COWDHeader.decode(r)
    guard Checked.isPowerOfTwo(UInt64(h.grainSize)), UInt64(h.grainSize) <= Limits.maxGrainSectors else {
      throw ImageError(.invalidField, format: format, field: "grainSize", offset: 16,
                       "is \(h.grainSize) sectors; it must be a power of two of at most \(Limits.maxGrainSectors)",
                       finding: "vmdk.grain-size")
    }
    guard UInt64(h.numGDEntries) <= Limits.maxGDEntries else {
      throw ImageError(.limitExceeded, format: format, field: "numGDEntries", offset: 24,
                       "is \(h.numGDEntries), limit \(Limits.maxGDEntries) (qemu's)", finding: "vmdk.gd-size")
    }
    let needed = Checked.ceilDiv(UInt64(h.numSectors), UInt64(h.grainSize) * COWDHeader.gtEntries)
    var info = ImageInfo(probe: id, qemuFormat: "vmdk", diskFormat: .vmdk, subformat: "vmfsSparse",
                         virtualSize: UInt64(h.numSectors) * 512)
    info.clusterSize = UInt64(h.grainSize) * 512
    var data = JSONObject()
    data.set("create-type", "vmfsSparse")
    data.set("version", UInt64(h.version))
    data.set("flags", UInt64(h.flags))
    data.set("grain-size", UInt64(h.grainSize))
    data.set("gd-offset", UInt64(h.gdOffset))
    data.set("gd-entries", UInt64(h.numGDEntries))
    data.set("free-sector", UInt64(h.freeSector))
    info.formatSpecific = data
    info.notes.append("legacy ESX 2.x sparse extent (COWD); the image service's inspector does not recognise this layout")
    info.findings.append(Finding("vmdk.cowd", .warning, field: "magic",
                                 "a legacy COWD (ESX 2.x vmfsSparse) extent: normally a redo log of another disk; many tools cannot read it"))
    if UInt64(h.numGDEntries) < needed {
      info.findings.append(Finding("vmdk.gd-out-of-range", .corrupt, field: "numGDEntries", offset: 24,
                                   "has \(h.numGDEntries) entries; \(needed) are needed to cover \(h.numSectors) sectors"))
    }
    return info
  }
}

extension VMDKDescriptor {
  /// No header key, extent or ddb entry at all (an all-NUL or comment-only region).
  var isEmpty: Bool {
    version == nil && createType == nil && cid == nil && extents.isEmpty && ddb.isEmpty && otherKeys.isEmpty
      && unknownLines.isEmpty
  }

  /// Whether any line held bytes outside ASCII (decoded as UTF-8 or windows-1252).
  var hasNonASCII: Bool {
    func bad(_ s: String) -> Bool { s.utf8.contains { $0 >= 0x80 } }
    return extents.contains { bad($0.filename ?? "") } || ddb.contains { bad($0.1) }
      || bad(parentFileNameHint ?? "") || otherKeys.contains { bad($0.1) }
      || unknownLines.contains { bad($0.1) }
  }
}
