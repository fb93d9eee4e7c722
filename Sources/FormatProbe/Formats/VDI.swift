/// Placeholder: detection for this format is being written.
public enum VDIProbe: FormatProbe {
  public static let id = "vdi"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
