/// Placeholder: detection for this format is being written.
public enum PartitionTableProbe: FormatProbe {
  public static let id = "partition-table"
  public static let role = ProbeRole.content
  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? { nil }
}
