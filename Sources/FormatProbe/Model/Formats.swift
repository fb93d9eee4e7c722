/// Glance's `disk_format` vocabulary, plus the formats imgtool recognises that the image service
/// has no value for (`luks`, `qed`, `qcow`): those are reported as they are, never guessed into a
/// neighbouring value.
public enum DiskFormat: String, Sendable, CaseIterable {
  case raw, qcow2, vhd, vhdx, vmdk, vdi, iso, ploop, aki, ari, ami
  case luks, qed, qcow

  /// Whether Glance accepts this as a `disk_format` value.
  public var isImageServiceValue: Bool {
    switch self {
    case .luks, .qed, .qcow: return false
    default: return true
    }
  }
}

/// Glance's `container_format` vocabulary.
public enum ContainerFormat: String, Sendable, CaseIterable {
  case bare, ova, ovf, aki, ari, ami, compressed, docker
}
