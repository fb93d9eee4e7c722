import FormatProbe

/// Fuzz target `all`: the whole of Inspector.inspect with every registered probe, also
/// as the head of a longer stream.
nonisolated(unsafe) let targetProbes: [any FormatProbe.Type]? = nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  FuzzDriver.run(data, size, only: targetProbes, asStream: true)
  return 0
}
