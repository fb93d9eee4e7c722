/// Placeholder: detection for this format is being written.
public enum OVAProbe: FormatProbe {
  public static let id = "ova"
  public static let role = ProbeRole.container
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
