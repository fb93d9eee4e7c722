import FormatProbe

/// Fuzz target `disc`: ISO 9660 and the raw-content probes (partition tables, filesystems).
nonisolated(unsafe) let targetProbes: [any FormatProbe.Type]? = FuzzDriver.probes(["iso", "partition-table", "filesystem"])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  FuzzDriver.run(data, size, only: targetProbes)
  return 0
}
