/// Placeholder: detection for this format is being written.
public enum LUKSProbe: FormatProbe {
  public static let id = "luks"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
