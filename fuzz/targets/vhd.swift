import FormatProbe

/// Fuzz target `vhd`: the Microsoft probes (vhd, vhdx).
nonisolated(unsafe) let targetProbes: [any FormatProbe.Type]? = FuzzDriver.probes(["vhd", "vhdx"])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  FuzzDriver.run(data, size, only: targetProbes)
  return 0
}
