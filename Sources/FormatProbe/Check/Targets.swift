/// Destinations with acceptance rules of their own (`imgtool check --target T`).
public enum Target: String, Sendable, CaseIterable {
  case glance, azure, esxi, aws, gce
}

/// Each destination's published acceptance rules, as findings with a fix hint, so users stop
/// learning them from rejected uploads. Sources are cited per rule in docs/formats.md ("Targets").
/// Violations that make the destination refuse the image are `mismatch`; advice is `warning`.
public enum TargetRules {
  public static func evaluate(_ target: Target, result: InspectionResult, declared: String?) -> [Finding] {
    guard let info = result.info else {
      return [Finding("\(target.rawValue).unidentified", .mismatch,
                      "\(target.rawValue) needs an identifiable image; this one is not",
                      fix: "inspect it with 'imgtool info' and fix or re-create it")]
    }
    switch target {
    case .glance: return glance(info, declared: declared)
    case .azure: return azure(info)
    case .esxi: return esxi(info)
    case .aws: return aws(info)
    case .gce: return gce(info)
    }
  }

  static func isFixedVHD(_ i: ImageInfo) -> Bool { i.probe == "vhd" && i.subformat == "fixed" }

  /// Glance 33 with `[image_format] require_image_format_match = true` (its default) runs
  /// oslo.utils' format inspector on uploads with container_format bare.
  static func glance(_ info: ImageInfo, declared: String?) -> [Finding] {
    var out: [Finding] = []
    let declaredFormat = declared.map(Expectation.normalise) ?? info.diskFormat.rawValue
    if !info.diskFormat.isImageServiceValue {
      out.append(Finding("glance.unsupported-format", .mismatch,
                         "Glance has no disk_format for \(info.diskFormat.rawValue) images (its list: ami ari aki vhd vhdx vmdk raw qcow2 vdi iso ploop)",
                         fix: "convert it: qemu-img convert -O qcow2 (or raw) after decrypting/flattening"))
    }
    // oslo's VHD inspector reads the footer copy at offset 0, which only dynamic and differencing
    // disks have; a fixed VHD (footer only at the end) is inspected as raw and refused as vhd.
    if isFixedVHD(info) && declaredFormat == "vhd" {
      out.append(Finding("glance.fixed-vhd", .mismatch,
                         "Glance's upload inspector sees a fixed VHD as raw, so declared disk_format vhd is refused with 415 (a known false refusal)",
                         fix: "upload it as a dynamic VHD (qemu-img convert -O vpc -o subformat=dynamic) or convert to raw"))
    }
    if info.probe == "vmdk", let sub = info.subformat, sub != "monolithicSparse", sub != "streamOptimized" {
      out.append(Finding("glance.vmdk-create-type", .mismatch,
                         "Glance's inspector accepts only monolithicSparse and streamOptimized VMDKs; this one is \(sub)",
                         fix: "qemu-img convert -O vmdk -o subformat=streamOptimized"))
    }
    if info.backingFilename != nil || info.externalReferences.contains(where: { $0.kind == "data-file" }) {
      out.append(Finding("glance.safety-checks", .mismatch,
                         "Glance refuses images that name other files (backing file, data file) with 415 'Image failed safety checks'",
                         fix: "flatten it: qemu-img convert -O \(info.qemuFormat == "vpc" ? "vpc" : info.qemuFormat) without -B"))
    }
    if info.probe == "qed" || info.probe == "qcow" {
      out.append(Finding("glance.banned-format", .mismatch, "Glance's inspector refuses \(info.probe) images outright",
                         fix: "qemu-img convert -O qcow2"))
    }
    if info.containerFormat == .ova || info.containerFormat == .ovf || info.containerFormat == .compressed {
      out.append(Finding("glance.container-not-inspected", .warning,
                         "Glance inspects only container_format bare uploads; an \(info.containerFormat.rawValue) is stored as it is and is not bootable by Nova directly",
                         fix: "extract the disk and upload it with container_format bare"))
    }
    return out
  }

  /// Azure managed disks: fixed VHD only, virtual size a whole number of MiB.
  static func azure(_ info: ImageInfo) -> [Finding] {
    var out: [Finding] = []
    if !isFixedVHD(info) {
      out.append(Finding("azure.fixed-vhd-required", .mismatch,
                         "Azure accepts only fixed-size VHD uploads; this is \(info.diskFormat.rawValue)\(info.subformat.map { " (\($0))" } ?? "")",
                         fix: "qemu-img convert -O vpc -o subformat=fixed,force_size=on"))
    }
    if let v = info.virtualSize, v % (1 << 20) != 0 {
      out.append(Finding("azure.size-alignment", .mismatch, field: "virtual-size",
                         "Azure needs the virtual size to be a whole number of MiB; \(v) bytes is not",
                         fix: "qemu-img resize -f raw to the next MiB before converting, then convert with force_size=on"))
    }
    if info.probe == "vhd", info.findings.contains(where: { $0.id.hasPrefix("vhd.footer") }) {
      out.append(Finding("azure.footer", .mismatch, "Azure rejects VHDs whose footer is inconsistent (checksum, copies)",
                         fix: "re-create the footer: qemu-img convert -O vpc -o subformat=fixed,force_size=on"))
    }
    if let v = info.virtualSize, v > 4 << 40 {
      out.append(Finding("azure.size-limit", .mismatch, field: "virtual-size",
                         "an Azure OS disk VHD can be at most 4 TiB", fix: "shrink the disk"))
    }
    return out
  }

  /// ESXi/vCenter imports: streamOptimized VMDK (version 3) inside OVA/OVF, ovftool member order.
  static func esxi(_ info: ImageInfo) -> [Finding] {
    var out: [Finding] = []
    var disks: [ImageInfo] = []
    if info.containerFormat == .ova || info.containerFormat == .ovf {
      disks = info.children.compactMap { $0.result.info }.filter { $0.probe != "ovf" }
      if info.findings.contains(where: { $0.id == "ova.descriptor-not-first" }) {
        out.append(Finding("esxi.ova-order", .mismatch, "ESXi and ovftool need the .ovf descriptor as the first OVA member (then .mf, .cert)",
                           fix: "re-create the tar with the .ovf first: tar -cf x.ova x.ovf x.mf disk*.vmdk"))
      }
      if info.formatSpecific.json["manifest"] == nil {
        out.append(Finding("esxi.ova-manifest", .warning, "the OVA has no .mf manifest; vCenter warns that integrity cannot be verified",
                           fix: "add a manifest of SHA256 digests (ovftool writes one)"))
      }
    } else {
      disks = [info]
    }
    for d in disks {
      if d.probe != "vmdk" {
        out.append(Finding("esxi.disk-format", .mismatch, "ESXi imports VMDK disks; this disk is \(d.diskFormat.rawValue)",
                           fix: "qemu-img convert -O vmdk -o subformat=streamOptimized"))
      } else if d.subformat != "streamOptimized", info.containerFormat == .ova {
        out.append(Finding("esxi.stream-optimized", .mismatch,
                           "disks inside an OVA must be streamOptimized VMDKs; this one is \(d.subformat ?? "?")",
                           fix: "qemu-img convert -O vmdk -o subformat=streamOptimized"))
      } else if info.containerFormat == .bare, let sub = d.subformat,
                ["monolithicSparse", "twoGbMaxExtentSparse", "streamOptimized"].contains(sub)
      {
        out.append(Finding("esxi.hosted-sparse", .warning,
                           "ESXi cannot attach a hosted \(sub) VMDK from a datastore; it must be imported (OVF/OVA) or converted",
                           fix: "vmkfstools -i disk.vmdk -d thin out.vmdk on the host, or package it in an OVA"))
      } else if d.subformat == "streamOptimized", let v = d.formatSpecific.json["version"]?.uint, v != 3 {
        out.append(Finding("esxi.vmdk-version", .mismatch, "ESXi expects streamOptimized VMDK version 3; this one is version \(v)",
                           fix: "qemu-img convert -O vmdk -o subformat=streamOptimized (writes version 3)"))
      }
    }
    return out
  }

  /// AWS VM Import: OVA, streamOptimized VMDK, fixed/dynamic VHD or VHDX, raw.
  static func aws(_ info: ImageInfo) -> [Finding] {
    var out: [Finding] = []
    let ok: Bool
    switch info.probe {
    case "raw", "vhdx": ok = true
    case "vhd": ok = info.subformat == "fixed" || info.subformat == "dynamic"
    case "vmdk": ok = info.subformat == "streamOptimized"
    case "ova": ok = true
    default: ok = false
    }
    if !ok {
      out.append(Finding("aws.format", .mismatch,
                         "AWS VM Import accepts OVA, streamOptimized VMDK, fixed or dynamic VHD, VHDX and raw; this is \(info.diskFormat.rawValue)\(info.subformat.map { " (\($0))" } ?? "")",
                         fix: "qemu-img convert -O vmdk -o subformat=streamOptimized"))
    }
    if info.backingFilename != nil || info.subformat == "differencing" {
      out.append(Finding("aws.differencing", .mismatch, "AWS VM Import needs a self-contained disk, not a differencing one",
                         fix: "flatten it with qemu-img convert"))
    }
    if info.encrypted == true {
      out.append(Finding("aws.encrypted", .mismatch, "encrypted disk images cannot be imported", fix: "decrypt before export"))
    }
    return out
  }

  /// Google Compute Engine image import: a `disk.raw` inside a gzip'd tar, size a whole number of GiB.
  static func gce(_ info: ImageInfo) -> [Finding] {
    var out: [Finding] = []
    let member = info.children.first
    // A plain tar (no .ovf) is reported by the OVA probe with subformat "tar".
    let isTarGz = info.probe == "compressed" && info.subformat == "gzip"
      && member?.result.info?.probe == "ova" && member?.result.info?.subformat == "tar"
    var disk: ImageInfo? = nil
    if isTarGz, let tar = member?.result.info {
      let names = tar.children.map(\.name)
      if names != ["disk.raw"] {
        out.append(Finding("gce.disk-raw", .mismatch, "the tar must hold exactly one member named disk.raw; it holds \(names)",
                           fix: "tar --format=oldgnu -Sczf image.tar.gz disk.raw"))
      }
      disk = tar.children.first(where: { $0.name == "disk.raw" })?.result.info
    } else {
      out.append(Finding("gce.tar-gz", .mismatch, "GCE imports a gzip-compressed tar holding disk.raw; this is \(info.diskFormat.rawValue) (\(info.containerFormat.rawValue))",
                         fix: "convert to raw, name it disk.raw, then tar --format=oldgnu -Sczf image.tar.gz disk.raw"))
      disk = info.probe == "raw" ? info : nil
    }
    if let d = disk {
      if d.diskFormat != .raw {
        out.append(Finding("gce.raw-required", .mismatch, "disk.raw must be a raw disk; it is \(d.diskFormat.rawValue)",
                           fix: "qemu-img convert -O raw"))
      }
      if let v = d.virtualSize, v % (1 << 30) != 0 {
        out.append(Finding("gce.size-alignment", .mismatch, field: "virtual-size",
                           "the raw disk size must be a whole number of GiB; \(v) bytes is not",
                           fix: "truncate -s \(Checked.ceilDiv(v, 1 << 30))G disk.raw"))
      }
      if d.diskFormat == .raw, d.partitionTable == nil {
        out.append(Finding("gce.partition-table", .warning, "the raw disk has no MBR or GPT partition table; GCE boots only partitioned disks",
                           fix: "image a whole disk, not a partition"))
      }
    }
    return out
  }
}
