/// Placeholder: detection for this format is being written.
public enum VHDXProbe: FormatProbe {
  public static let id = "vhdx"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
