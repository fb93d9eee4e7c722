/// Placeholder: detection for this format is being written.
public enum QCOWProbe: FormatProbe {
  public static let id = "qcow"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
