/// Placeholder: detection for this format is being written.
public enum VHDProbe: FormatProbe {
  public static let id = "vhd"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
