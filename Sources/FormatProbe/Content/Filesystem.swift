/// Placeholder: detection for this format is being written.
public enum FilesystemProbe: FormatProbe {
  public static let id = "filesystem"
  public static let role = ProbeRole.content
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
