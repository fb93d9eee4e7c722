/// Placeholder: detection for this format is being written.
public enum AKIProbe: FormatProbe {
  public static let id = "aki"
  public static let role = ProbeRole.container
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
