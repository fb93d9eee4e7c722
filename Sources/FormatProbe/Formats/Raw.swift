/// Raw: the fallback when no probe matches. Virtual size is the file size.
public enum RawProbe {
  /// `lengthKnown` is false for the inflated head of a compressed payload of unknown size.
  public static func describe(size: UInt64, lengthKnown: Bool = true) -> ImageInfo {
    var info = ImageInfo(probe: "raw", qemuFormat: "raw", diskFormat: .raw, virtualSize: size)
    if lengthKnown, size % 512 != 0 {
      let rounded = (size / 512 + 1) * 512
      info.notes.append("the file holds \(size) bytes, not a whole number of 512-byte sectors: qemu-img reports \(rounded) (it rounds up) and a guest sees zeros after byte \(size)")
    }
    return info
  }
}
