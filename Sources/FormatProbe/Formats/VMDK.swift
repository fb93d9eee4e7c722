/// Placeholder: detection for this format is being written.
public enum VMDKProbe: FormatProbe {
  public static let id = "vmdk"
  public static let role = ProbeRole.image
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
