import FormatProbe

/// Fuzz target `containers`: the container probes (ova, ovf, aki, ari, compressed).
nonisolated(unsafe) let targetProbes: [any FormatProbe.Type]? = FuzzDriver.probes(["ova", "ovf", "aki", "ari", "compressed"])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  FuzzDriver.run(data, size, only: targetProbes)
  return 0
}
