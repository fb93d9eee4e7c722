import FormatProbe

/// Fuzz target `vmdk`: the VMware, VirtualBox and Virtuozzo probes (vmdk, vdi, ploop).
nonisolated(unsafe) let targetProbes: [any FormatProbe.Type]? = FuzzDriver.probes(["vmdk", "vdi", "ploop"])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  FuzzDriver.run(data, size, only: targetProbes)
  return 0
}
