/// Placeholder: detection for this format is being written.
public enum ISOProbe: FormatProbe {
  public static let id = "iso"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
