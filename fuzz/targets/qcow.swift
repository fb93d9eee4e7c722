import FormatProbe

/// Fuzz target `qcow`: the QEMU-family probes (qcow2, qcow, qed) and LUKS.
nonisolated(unsafe) let targetProbes: [any FormatProbe.Type]? = FuzzDriver.probes(["qcow2", "qcow", "qed", "luks"])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  FuzzDriver.run(data, size, only: targetProbes)
  return 0
}
