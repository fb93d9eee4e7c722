/// Placeholder: detection for this format is being written.
public enum CompressedProbe: FormatProbe {
  public static let id = "compressed"
  public static let role = ProbeRole.container
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
