/// Placeholder: detection for this format is being written.
public enum PloopProbe: FormatProbe {
  public static let id = "ploop"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
