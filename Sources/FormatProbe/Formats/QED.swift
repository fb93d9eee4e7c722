/// Placeholder: detection for this format is being written.
public enum QEDProbe: FormatProbe {
  public static let id = "qed"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
