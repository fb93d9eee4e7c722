/// Placeholder: detection for this format is being written.
public enum ARIProbe: FormatProbe {
  public static let id = "ari"
  public static let role = ProbeRole.container
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
