/// The one list of probes. A new format is a file in Formats/, Containers/ or Content/, a line
/// here, fixtures, and a section in docs/formats.md.
public enum Registry {
  nonisolated(unsafe) public static let all: [any FormatProbe.Type] = [
    QCOW2Probe.self,
    QCOWProbe.self,
    QEDProbe.self,
    LUKSProbe.self,
    VHDProbe.self,
    VHDXProbe.self,
    VMDKProbe.self,
    VDIProbe.self,
    PloopProbe.self,
    ISOProbe.self,
    OVAProbe.self,
    OVFProbe.self,
    AKIProbe.self,
    ARIProbe.self,
    CompressedProbe.self,
    PartitionTableProbe.self,
    FilesystemProbe.self,
  ]

  public static func probe(id: String) -> (any FormatProbe.Type)? {
    all.first { $0.id == id }
  }
}
