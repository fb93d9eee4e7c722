/// What a probe found: one image format, container, partition table or filesystem.
/// JSON keys (see `Report/InfoReport.swift`) follow `qemu-img info --output=json` where the meaning
/// is the same, plus imgtool's own (docs/formats.md, "JSON schema").
public struct ImageInfo: Sendable {
  /// Registry id of the probe that produced this (`qcow2`, `vhd`, `iso`, `partition-table`, ...).
  public var probe: String
  /// qemu's driver name for the format (`format` key): `vpc` for VHD, `raw` for ISO, `parallels` for ploop.
  public var qemuFormat: String
  /// The image service's `disk_format` value.
  public var diskFormat: DiskFormat
  /// The image service's `container_format` value.
  public var containerFormat: ContainerFormat = .bare
  /// Variant users meet: `dynamic`, `fixed`, `streamOptimized`, `v3`, ...
  public var subformat: String?
  /// Guest-visible size in bytes, exact.
  public var virtualSize: UInt64?
  public var clusterSize: UInt64?
  public var dirty: Bool?
  public var encrypted: Bool?
  public var backingFilename: String?
  public var backingFormat: String?
  /// qemu-img's `format-specific.data` for this format; `format-specific.type` is `qemuFormat`.
  public var formatSpecific = JSONObject()
  /// Every file, URL or device the image names; never opened.
  public var externalReferences: [ExternalReference] = []
  /// Header-level findings (check adds deep ones).
  public var findings: [Finding] = []
  /// Plain remarks for people (why a size was chosen, what qemu-img would say differently).
  public var notes: [String] = []
  /// Partition table description, for raw disks, hybrid ISOs and fixed VHDs.
  public var partitionTable: JSON?
  /// Filesystem found at the start of the data (raw filesystem images, partitions).
  public var filesystem: JSON?
  /// Images inside this one: OVA members, a compressed payload.
  public var children: [ChildImage] = []

  public init(probe: String, qemuFormat: String, diskFormat: DiskFormat, subformat: String? = nil,
              virtualSize: UInt64? = nil)
  {
    self.probe = probe
    self.qemuFormat = qemuFormat
    self.diskFormat = diskFormat
    self.subformat = subformat
    self.virtualSize = virtualSize
  }

  /// Minimum root disk in whole GiB a compute host needs: ceil(virtual size / 2^30).
  public var minDisk: UInt64? { virtualSize.map { Checked.ceilDiv($0, 1 << 30) } }
}

/// A member of a container (OVA entry, compressed payload) and what was found in it.
public struct ChildImage: Sendable {
  public var name: String
  public var offset: UInt64?
  public var size: UInt64?
  public var result: InspectionResult

  public init(name: String, offset: UInt64?, size: UInt64?, result: InspectionResult) {
    self.name = name
    self.offset = offset
    self.size = size
    self.result = result
  }
}
