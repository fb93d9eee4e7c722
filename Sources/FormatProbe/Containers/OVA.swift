/// OVA: a POSIX tar holding an OVF descriptor (first, by DSP0243 section 5.3), an optional
/// manifest (.mf) and certificate (.cert), and the disk files. imgtool walks the tar headers only,
/// reads the descriptor and manifest (size-capped), and probes each disk member recursively
/// through a slice of the archive. A tar without a descriptor is reported as a plain tar archive.
public enum OVAProbe: FormatProbe {
  public static let id = "ova"
  public static let role = ProbeRole.container

  public enum Limits {
    /// Members probed as nested images: an OVA has a handful of disks; 64 bounds the work a tar of
    /// many small members can cause (each probe reads up to 64 KiB).
    public static let maxChildren = 64
    /// Manifest and certificate size read: real manifests are a few hundred bytes.
    public static let maxManifest = 4 << 20
  }

  /// Member names probed as images even when no Disk names them.
  static let imageExtensions: Set<String> = ["vmdk", "vhd", "vhdx", "qcow2", "qcow", "img", "raw", "iso", "vdi", "hdd",
                                             "gz", "xz", "zst", "lz4", "bz2"]

  static func ext(_ name: String) -> String {
    guard let dot = name.lastIndex(of: ".") else { return "" }
    return name[name.index(after: dot)...].lowercased()
  }

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    guard ctx.head.count >= 512, ctx.headReader("ova").matches(Tar.ustarMagic, at: 257) else { return nil }
    let listing = try Tar.walk(ctx.source, format: "ova")
    let regular = listing.members.filter { $0.isRegular }
    let descriptors = regular.filter { ext($0.name) == "ovf" }
    var info: ImageInfo
    var descriptor: OVFDescriptor?
    if let ovf = descriptors.first {
      (info, descriptor) = describeOVA(ctx, listing, ovf: ovf, descriptorCount: descriptors.count)
    } else {
      info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .raw, subformat: "tar")
      info.containerFormat = .compressed
      info.notes.append("a plain tar archive (no .ovf descriptor), not an OVA; the image service has no tar container format, 'compressed' (archives) is the nearest")
    }
    info.formatSpecific.set("members", JSON.array(listing.members.prefix(1000).map { m in
      var j = JSONObject()
      j.set("name", m.name)
      j.set("type", m.typeName)
      j.set("offset", m.dataOffset)
      j.set("size", m.size)
      j.set("real-size", m.realSize)
      j.set("link", m.linkName)
      return j.json
    }))
    info.formatSpecific.set("member-count", listing.members.count)
    info.formatSpecific.set("tar-format", listing.sawPax ? "pax" : listing.gnu ? "gnu" : "ustar")
    if let e = listing.error {
      if e.kind == .needsSeekable {
        info.notes.append("the member listing stops where the available bytes end: \(e.description)")
      } else {
        info.findings.append(Finding(corrupt: e, id: e.finding ?? "ova.malformed"))
      }
    }
    if !listing.sawEndMarker && listing.error == nil {
      info.notes.append("the archive has no end-of-archive marker (two zero blocks); readers accept this")
    }
    for m in listing.members {
      if Tar.escapesDirectory(m.name) {
        info.findings.append(Finding("ova.member-path", .unsafe, field: "name", offset: m.headerOffset,
                                     "member '\(m.name)' would be written outside the extraction directory (absolute path or '..')",
                                     fix: "rebuild the archive with plain relative member names"))
      }
      if m.isLink {
        info.findings.append(Finding("ova.member-link", .unsafe, field: "typeflag", offset: m.headerOffset,
                                     "member '\(m.name)' is a \(m.typeName) to '\(m.linkName ?? "")': an extractor would create a link that can point outside the package",
                                     fix: "store the file itself instead of a link"))
        info.externalReferences.append(ExternalReference(kind: "tar-link", name: m.linkName ?? "", offset: m.headerOffset))
      } else if m.isSpecial {
        info.findings.append(Finding("ova.member-special", .unsafe, field: "typeflag", offset: m.headerOffset,
                                     "member '\(m.name)' is a \(m.typeName): extracting it as root creates a device node or FIFO"))
      }
    }
    // Children: disks named by the descriptor first, then other image-like members.
    var childMembers: [TarMember] = []
    var diskMembers: [TarMember] = []
    if let d = descriptor {
      for (_, file) in d.diskFiles {
        if let m = member(named: file.href, in: regular), !diskMembers.contains(m) { diskMembers.append(m) }
      }
      childMembers = diskMembers
      for m in regular where !childMembers.contains(m) && imageExtensions.contains(ext(m.name)) { childMembers.append(m) }
    } else if !descriptors.isEmpty {
      // An OVA whose descriptor could not be read: its image-like members are still probed.
      childMembers = regular.filter { imageExtensions.contains(ext($0.name)) }
      diskMembers = childMembers
    } else {
      childMembers = regular.filter { $0.size > 0 }
      diskMembers = childMembers
    }
    if childMembers.count > Limits.maxChildren {
      info.notes.append("only the first \(Limits.maxChildren) of \(childMembers.count) image members were probed")
      childMembers = Array(childMembers.prefix(Limits.maxChildren))
    }
    var depthLimited = false
    for m in childMembers {
      guard let result = ctx.inspectNested(memberSource(ctx.source, m)) else {
        depthLimited = true
        continue
      }
      info.children.append(ChildImage(name: m.name, offset: m.dataOffset, size: m.realSize ?? m.size, result: result))
    }
    if depthLimited {
      // Members nobody probed could be any format (a backing file, an external extent).
      info.findings.append(Finding("ova.depth-limit", .unsafe, field: "members",
                                   "members were not probed: the nesting depth limit (\(ctx.options.maxDepth)) was reached, so their formats and safety are unknown",
                                   fix: "do not nest archives inside archives"))
    }

    // Sizes and formats from what the disks really are.
    let diskChildren = info.children.filter { c in diskMembers.contains { $0.dataOffset == c.offset } }
    let diskInfos = diskChildren.compactMap { $0.result.info }
    if diskChildren.count == 1, let only = diskInfos.first, let v = only.virtualSize {
      // A member imgtool cannot recognise (raw) has no virtual size when the descriptor says it
      // is a structured format: its byte length would be a wrong answer.
      let declared = descriptor?.agreedDiskFormat?.0
      if only.probe == "raw", let declared, declared != .raw {
        info.notes.append("the disk member is not recognised as \(declared.rawValue), so no virtual size is reported")
      } else {
        info.virtualSize = v
      }
    } else if diskChildren.count > 1 {
      info.notes.append("\(diskChildren.count) disks: no single virtual size; each member reports its own")
    }
    // The disk format: what the disks are when imgtool recognises them all (raw means unrecognised),
    // else what the descriptor declares.
    if let first = diskInfos.first, diskInfos.count == diskChildren.count, first.probe != "raw" || descriptor == nil,
       diskInfos.allSatisfy({ $0.diskFormat == first.diskFormat && ($0.probe != "raw" || descriptor == nil) })
    {
      info.diskFormat = first.diskFormat
      info.subformat = descriptors.isEmpty ? "tar" : diskInfos.allSatisfy({ $0.subformat == first.subformat }) ? first.subformat : nil
    } else if descriptor == nil, diskInfos.count == 1, let only = diskInfos.first {
      info.diskFormat = only.diskFormat
    }
    if let d = descriptor {
      info.findings += capacityFindings(d, regular, info.children)
      info.findings += formatFindings(d, regular, info.children)
    }
    return info
  }

  /// A member's content as a byte source: a slice of the archive, or the expanded sparse file.
  static func memberSource(_ source: ByteSource, _ m: TarMember) -> ByteSource {
    m.sparseMap != nil ? SparseMemberSource(source, member: m) : SliceSource(source, start: m.dataOffset, length: m.size, name: m.name)
  }

  static func member(named href: String, in members: [TarMember]) -> TarMember? {
    let want = Tar.normalize(href)
    return members.first { $0.normalizedName == want }
  }

  static func readMember(_ ctx: ProbeContext, _ m: TarMember, what: String) throws(ImageError) -> [UInt8] {
    guard m.size <= UInt64(Limits.maxManifest) else {
      throw ImageError(.limitExceeded, format: "ova", field: what, offset: m.dataOffset,
                       "member '\(m.name)' is \(m.size) bytes, limit \(Limits.maxManifest)")
    }
    return try ctx.source.readExactly(at: m.dataOffset, count: Int(m.size), format: "ova", field: what)
  }

  static func describeOVA(_ ctx: ProbeContext, _ listing: TarListing, ovf: TarMember, descriptorCount: Int)
    -> (ImageInfo, OVFDescriptor?)
  {
    var info: ImageInfo
    var descriptor: OVFDescriptor?
    do throws(ImageError) {
      let bytes = try readMember(ctx, ovf, what: "descriptor")
      let d = try OVFDescriptor.parse(bytes, base: ovf.dataOffset)
      descriptor = d
      info = OVFProbe.describe(d, name: ovf.name)
      info.notes.removeAll { $0.hasPrefix("qemu-img has no OVF driver") }
    } catch {
      info = ImageInfo(probe: id, qemuFormat: "raw", diskFormat: .raw)
      info.findings.append(Finding(corrupt: error, id: error.finding ?? "ovf.malformed"))
    }
    info.probe = id
    info.containerFormat = .ova
    info.formatSpecific.set("descriptor", ovf.name)
    info.notes.append("qemu-img has no OVA driver: it would read the tar archive as raw bytes")
    let regular = listing.members.filter { $0.isRegular }
    if regular.first != ovf {
      info.findings.append(Finding("ova.descriptor-not-first", .warning, field: "member order", offset: ovf.headerOffset,
                                   "the descriptor '\(ovf.name)' is not the first member (DSP0243 requires it first; ESXi and ovftool reject such archives)",
                                   fix: "rebuild the tar with the .ovf first, then the .mf, then the disks"))
    }
    if descriptorCount > 1 {
      info.findings.append(Finding("ova.multiple-descriptors", .warning, field: "members",
                                   "the archive holds \(descriptorCount) .ovf members; '\(ovf.name)' was used"))
    }
    if let d = descriptor {
      for f in d.files where !OVFDescriptor.isExternal(f.href) {
        let present = member(named: f.href, in: regular) != nil
          || (f.chunkSize != nil && member(named: f.href + ".000000000", in: regular) != nil)
        if !present {
          info.findings.append(Finding("ova.member-missing", .corrupt, field: "File href",
                                       "File \(f.id) names '\(f.href)', which is not in the archive",
                                       fix: "add the file to the archive or remove its reference"))
        }
      }
      for f in d.files where OVFDescriptor.isExternal(f.href) {
        info.externalReferences.append(ExternalReference(kind: "ovf-file", name: f.href))
      }
    }
    // Manifest.
    let manifests = regular.filter { ext($0.name) == "mf" }
    if let mf = manifests.first {
      do throws(ImageError) {
        let m = OVFManifest.parse(try readMember(ctx, mf, what: "manifest"))
        info.formatSpecific.set("manifest", m.json)
        if !m.malformedLines.isEmpty {
          info.findings.append(Finding("ova.manifest-malformed", .warning, field: "manifest", offset: mf.dataOffset,
                                       "manifest '\(mf.name)' has lines that are not 'ALG(name)= digest' (lines \(m.malformedLines.prefix(10).map(String.init).joined(separator: ", ")))"))
        }
        for e in m.entries where member(named: e.name, in: regular) == nil {
          info.findings.append(Finding("ova.member-missing", .corrupt, field: "manifest", offset: mf.dataOffset,
                                       "the manifest lists '\(e.name)', which is not in the archive"))
        }
        for r in regular where r != mf && !["mf", "cert"].contains(ext(r.name)) {
          if !m.entries.contains(where: { Tar.normalize($0.name) == r.normalizedName }) {
            info.findings.append(Finding("ova.manifest-missing-entry", .warning, field: "manifest", offset: r.headerOffset,
                                         "member '\(r.name)' has no digest in the manifest, so its integrity cannot be verified",
                                         fix: "regenerate the manifest over every member"))
          }
        }
      } catch {
        info.findings.append(Finding(corrupt: error, id: "ova.manifest-malformed"))
      }
      if let i = regular.firstIndex(of: mf), i != 1 {
        info.notes.append("the manifest is not the second member (DSP0243 puts it right after the descriptor)")
      }
    }
    if regular.contains(where: { ext($0.name) == "cert" }) {
      info.notes.append("the package is signed (.cert member); the signature is not verified")
    }
    return (info, descriptor)
  }

  /// What a Disk's member really holds: the member's own description, or for a member the File
  /// declares compressed, the payload inside it.
  static func content(_ file: OVFFile, _ regular: [TarMember], _ children: [ChildImage]) -> (TarMember, ImageInfo)? {
    guard let m = member(named: file.href, in: regular), let child = children.first(where: { $0.offset == m.dataOffset }),
          let ci = child.result.info
    else { return nil }
    if file.compression != nil, ci.probe == "compressed" {
      guard let inner = ci.children.first?.result.info else { return nil }
      return (m, inner)
    }
    return (m, ci)
  }

  /// ova.disk-format-mismatch: a disk member that is not the format its Disk declares. Corrupt when
  /// imgtool recognises it as another format; a warning when it recognises nothing (raw) while
  /// the Disk declares a structured format.
  static func formatFindings(_ d: OVFDescriptor, _ regular: [TarMember], _ children: [ChildImage]) -> [Finding] {
    var out: [Finding] = []
    for (disk, file) in d.diskFiles {
      guard let declared = disk.diskFormat?.0, let (m, ci) = content(file, regular, children), ci.diskFormat != declared else { continue }
      if ci.probe == "raw" {
        out.append(Finding("ova.disk-format-mismatch", .warning, field: "Disk format",
                           "Disk \(disk.id) declares \(declared.rawValue), but imgtool does not recognise '\(m.name)' as \(declared.rawValue) (it reads as raw data)",
                           fix: "check that the member is the disk the descriptor describes"))
      } else {
        out.append(Finding("ova.disk-format-mismatch", .corrupt, field: "Disk format",
                           "Disk \(disk.id) declares \(declared.rawValue), but '\(m.name)' is \(ci.diskFormat.rawValue): an importer would misread it",
                           fix: "set the Disk's ovf:format to the member's real format"))
      }
    }
    return out
  }

  /// ovf.capacity-mismatch: a Disk's declared capacity against the virtual size its member has.
  static func capacityFindings(_ d: OVFDescriptor, _ regular: [TarMember], _ children: [ChildImage]) -> [Finding] {
    var out: [Finding] = []
    for (disk, file) in d.diskFiles {
      // Compared only when the member is the format the Disk declares (an unrecognised member has
      // no comparable virtual size).
      guard let cap = disk.capacity, let (m, ci) = content(file, regular, children), let v = ci.virtualSize, cap != v,
            disk.diskFormat.map({ $0.0 == ci.diskFormat }) ?? (ci.probe != "raw")
      else { continue }
      let smaller = cap < v
      out.append(Finding("ovf.capacity-mismatch", smaller ? .corrupt : .warning, field: "Disk capacity",
                         "Disk \(disk.id) declares \(cap) bytes, but '\(m.name)' has a virtual size of \(v) bytes"
                           + (smaller ? ": an importer sizing the disk from the descriptor would cut the guest's data" : ": an importer would create a larger disk than the image"),
                         fix: "set ovf:capacity to the disk's virtual size"))
    }
    return out
  }
}
