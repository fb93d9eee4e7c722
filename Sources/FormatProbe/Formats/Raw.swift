/// Raw: the fallback when no probe matches. Virtual size is the file size.
public enum RawProbe {
  public static func describe(size: UInt64) -> ImageInfo {
    ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: size)
  }
}
