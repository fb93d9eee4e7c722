/// Placeholder: detection for this format is being written.
public enum QCOW2Probe: FormatProbe {
  public static let id = "qcow2"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
