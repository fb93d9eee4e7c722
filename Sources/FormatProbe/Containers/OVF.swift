/// Placeholder: detection for this format is being written.
public enum OVFProbe: FormatProbe {
  public static let id = "ovf"
  public static let role = ProbeRole.container
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
