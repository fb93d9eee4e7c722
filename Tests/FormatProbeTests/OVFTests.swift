import Foundation
import XCTest
@testable import FormatProbe

/// The OVF descriptor reader: real exporters' descriptors (VMware ovftool/vCenter/ESX, ova-compose,
/// VirtualBox, XenCenter, virt-v2v, COT) against their documented answers, and hostile XML.
final class OVFTests: XCTestCase {
  /// The shared samples folder beside the repository (skipped when absent).
  static var samples: URL? {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    for up in ["../shared/samples", "../../shared/samples"] {
      let u = repo.appendingPathComponent(up).standardizedFileURL
      if FileManager.default.fileExists(atPath: u.appendingPathComponent("ovf").path) { return u }
    }
    return nil
  }

  func sample(_ name: String) throws -> [UInt8] {
    guard let dir = OVFTests.samples else { throw XCTSkip("shared OVF samples are not available") }
    return [UInt8](try Data(contentsOf: dir.appendingPathComponent("ovf/\(name)")))
  }

  struct Expect {
    var namespace: String
    var version: String? = nil
    var systems: Int = 1
    var collections: Int = 0
    var files: [(String, String, UInt64?)]
    var disks: [(String, String?, UInt64)]
    /// Per system: (id, cpus, memory MiB, disk Items).
    var vs: [(String, UInt64, UInt64, Int)]
    var products = 0
    var eulas = 0
    var defaultConfiguration: String? = nil
    var diskFormat: DiskFormat = .vmdk
  }

  static let dmtf1 = "http://schemas.dmtf.org/ovf/envelope/1"

  /// The answers documented with the samples (capacities in bytes).
  static let expected: [String: Expect] = [
    "ttylinux-pc_i486-16.1.ovf": Expect(namespace: dmtf1, files: [("file1", "ttylinux-pc_i486-16.1-disk1.vmdk", 10595840)],
                                         disks: [("vmdisk1", "file1", 31457280)], vs: [("vm", 1, 32, 1)]),
    "test_gzip.ovf": Expect(namespace: dmtf1, files: [("file1", "test_gzip.ovf-disk1.vmdk.gz", 848847459)],
                            disks: [("vmdisk1", "file1", 21474836480)], vs: [("vm", 1, 4096, 1)]),
    "nostalgia-chunkdisk.ovf": Expect(namespace: dmtf1, files: [("file1", "Nostalgia-disk1.vmdk", 6872576)],
                                      disks: [("vmdisk1", "file1", 107373568)], vs: [("Nostalgia", 1, 64, 1)]),
    "nested-vapp.ovf": Expect(namespace: dmtf1, systems: 3, collections: 3,
                              files: [("file1", "nested-vapp-disk1.vmdk", 68096), ("file2", "nested-vapp-disk2.vmdk", 68096),
                                      ("file3", "nested-vapp-disk3.vmdk", 68096)],
                              disks: [("vmdisk1", "file1", 536870912), ("vmdisk2", "file2", 536870912), ("vmdisk3", "file3", 536870912)],
                              vs: [("grandVm", 1, 512, 1), ("childVm", 1, 512, 1), ("nestedRootVm", 1, 256, 1)]),
    "oslo.vmware-test.ovf": Expect(namespace: dmtf1, files: [("file1", "test-file1.iso", 419840), ("file2", "test-disk1.vmdk", 12046336)],
                                   disks: [("vmdisk1", "file2", 1073741824)], vs: [("test", 1, 512, 1)]),
    "test-i-ova-two-disks.ovf": Expect(namespace: dmtf1, files: [("file1", "disk1.vmdk", 7804077568), ("file2", "disk2.vmdk", 178523318784)],
                                       disks: [("vmdisk1", "file1", 53687091200), ("vmdisk2", "file2", 483183820800)],
                                       vs: [("2K8R2EESP1_2_Medium", 1, 1024, 2)]),
    "Vcf-License-Server-9.1.0.0.25262073.ovf": Expect(
      namespace: dmtf1,
      files: [("file0", "Vcf-License-Server-9.1.0.0.25262073-disk1.vmdk", 699083264), ("file1", "Vcf-License-Server-9.1.0.0.25262073-disk2.vmdk", 68096)],
      disks: [("vmdisk0", "file0", 4294967296), ("vmdisk1", "file1", 4294967296), ("vmdisk2", nil, 4294967296)],
      vs: [("vm", 2, 4096, 3)], products: 2),
    "ubuntu24.10.ovf": Expect(namespace: dmtf1, files: [("file1", "ubuntu-oracular-24.10-cloudimg.vmdk", 595726336)],
                              disks: [("vmdisk1", "file1", 10737418240)], vs: [("ubuntu-oracular-24.10-cloudimg-20241109", 2, 1024, 1)],
                              products: 1),
    "bitnami-tomcatstack-8.0.36-x86_64.ovf": Expect(
      namespace: dmtf1, files: [("file1", "bitnami-tomcatstack-8.0.36-2-linux-ubuntu-14.04-x86_64-disk1.vmdk", 551212032)],
      disks: [("vmdisk1", "file1", 18253611008)], vs: [("bitnami-tomcatstack", 1, 1024, 1)]),
    "photon-ova.ovf": Expect(namespace: dmtf1, files: [("file1", "photon-ova-disk1.vmdk", 1891191296)],
                             disks: [("vmdisk1", "file1", 17179869184)], vs: [("vm", 1, 2048, 1)], products: 1, eulas: 1),
    "c8000v.ovf": Expect(namespace: dmtf1,
                         files: [("file1", "c8000v_harddisk_8G.vmdk", 723968), ("file2", "c8000v_harddisk_16G.vmdk", 1380352),
                                 ("readme-ovf", "README-OVF.txt", 8740),
                                 ("c8000v-universalk9_vga.17.05.01a.iso", "c8000v-universalk9_vga.17.05.01a.iso", 830001152)],
                         disks: [("vmdisk1", "file1", 8589934592), ("vmdisk2", "file2", 17179869184)],
                         vs: [("com.cisco.c8000v", 1, 4096, 2)], products: 1, defaultConfiguration: "1CPU-4GB-16GB"),
    "iosv.ovf": Expect(namespace: dmtf1, files: [("vios-adventerprisek9-m.vmdk", "input.vmdk", 152576)],
                       disks: [("flash2", nil, 134217728), ("vios-adventerprisek9-m.vmdk", "vios-adventerprisek9-m.vmdk", 1073741824)],
                       vs: [("com.cisco.iosv", 1, 384, 2)], products: 1, defaultConfiguration: "1CPU-384MB-2NIC"),
    "vbox-winxp-sharedfolders.ovf": Expect(namespace: dmtf1, version: "1.0",
                                           files: [("file1", "Windows 5.1 XP 1 merged.vmdk", 4948965888), ("file2", "smallvdi.vmdk", 1265152)],
                                           disks: [("vmdisk1", "file1", 10485760000), ("vmdisk2", "file2", 2147483648)],
                                           vs: [("Windows 5.1 XP 1", 1, 895, 2)]),
    "vbox-winxp-audio-nodisks.ovf": Expect(namespace: dmtf1, version: "1.0", files: [], disks: [], vs: [("WinXP", 1, 512, 0)],
                                           diskFormat: .raw),
    "ubuntu.2.0.ovf": Expect(namespace: "http://schemas.dmtf.org/ovf/envelope/2", version: "2.0",
                             files: [("file1", "ubuntu.2.0-disk1.vmdk", nil)], disks: [("vmdisk1", "file1", 8589934592)],
                             vs: [("ubuntu", 1, 512, 1)]),
    "joomla-1.1.4-ovf.ovf": Expect(namespace: "http://www.vmware.com/schema/ovf/1/envelope", version: "0.9",
                                   files: [("file1", "joomla-1.1.4-ovf-0.vmdk", 199414784), ("file2", "joomla-1.1.4-ovf-1.vmdk", 393216)],
                                   disks: [("disk1", "file1", 1610612736), ("disk2", "file2", 10737418240)],
                                   vs: [("joomla-1.1.4-ovf", 1, 256, 2)]),
    "xencenter-sample_app.ovf": Expect(namespace: dmtf1,
                                       files: [("64891892-169e-470b-9779-368ee4ad2c15", "5936bc8c-20ae-4052-9083-b8e5b96dc683.vhd", 16777216)],
                                       disks: [("64891892-169e-470b-9779-368ee4ad2c15", "64891892-169e-470b-9779-368ee4ad2c15", 10485760)],
                                       vs: [("68f97bfd-1a03-422f-97d5-db5046c20b78", 1, 64, 0)], eulas: 1, diskFormat: .vhd),
    "test-o-ovirt.ovf": Expect(namespace: "http://schemas.dmtf.org/ovf/envelope/1/", version: "0.9",
                               files: [("#VOL_ID#", "#DISK_ID#/#VOL_ID#", nil)], disks: [("#VOL_ID#", "#DISK_ID#/#VOL_ID#", 536870912)],
                               vs: [("out", 1, 1024, 1)], diskFormat: .raw),
  ]

  func testEverySampleDescriptor() throws {
    guard let dir = OVFTests.samples else { throw XCTSkip("shared OVF samples are not available") }
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("ovf").path).filter { $0.hasSuffix(".ovf") }
    XCTAssertGreaterThanOrEqual(names.count, 19)
    for name in names.sorted() {
      let bytes = try sample(name)
      let d: OVFDescriptor
      do { d = try OVFDescriptor.parse(bytes) } catch { XCTFail("\(name): \(error)"); continue }
      // Every sample is a safe descriptor: no DOCTYPE, no external hrefs.
      XCTAssertEqual(d.findings(descriptorName: name).map(\.id), [], name)
      guard let e = OVFTests.expected[name] else {
        XCTAssertEqual(name, "VMware-vCenter-Server-Appliance-6.5.0.5100-3945287_OVF10.ovf", "no expectation for \(name)")
        continue
      }
      XCTAssertEqual(d.namespace, e.namespace, name)
      XCTAssertEqual(d.version, e.version, name)
      XCTAssertEqual(d.systems.count, e.systems, name)
      XCTAssertEqual(d.collections, e.collections, name)
      XCTAssertEqual(d.files.map(\.id), e.files.map(\.0), name)
      XCTAssertEqual(d.files.map(\.href), e.files.map(\.1), name)
      XCTAssertEqual(d.files.map(\.size), e.files.map(\.2), name)
      XCTAssertEqual(d.disks.map(\.id), e.disks.map(\.0), name)
      XCTAssertEqual(d.disks.map(\.fileRef), e.disks.map(\.1), name)
      XCTAssertEqual(d.disks.map(\.capacity), e.disks.map { Optional($0.2) }, name)
      XCTAssertEqual(d.systems.map { $0.id ?? "" }, e.vs.map(\.0), name)
      XCTAssertEqual(d.systems.map(\.cpus), e.vs.map { Optional($0.1) }, name)
      XCTAssertEqual(d.systems.map(\.memoryMiB), e.vs.map { Optional($0.2) }, name)
      XCTAssertEqual(d.systems.map(\.diskItems), e.vs.map(\.3), name)
      XCTAssertEqual(d.productSections, e.products, name)
      XCTAssertEqual(d.eulaSections, e.eulas, name)
      XCTAssertEqual(d.defaultConfiguration, e.defaultConfiguration, name)
      let info = OVFProbe.describe(d, name: name)
      XCTAssertEqual(info.diskFormat, e.diskFormat, name)
    }
  }

  func testVCenterApplianceDeploymentOptions() throws {
    let d = try OVFDescriptor.parse(try sample("VMware-vCenter-Server-Appliance-6.5.0.5100-3945287_OVF10.ovf"))
    XCTAssertEqual(d.files.count, 5)
    XCTAssertEqual(d.disks.count, 23)
    XCTAssertEqual(d.disks.filter { $0.fileRef == nil }.count, 20)
    XCTAssertEqual(d.disks.last?.capacity, 1099511627776)
    XCTAssertEqual(d.configurations.count, 11)
    XCTAssertEqual(d.defaultConfiguration, "tiny")
    XCTAssertEqual(d.systems.count, 1)
    let s = d.systems[0]
    XCTAssertEqual(s.cpus, 2)
    XCTAssertEqual(s.memoryMiB, 8192)
    XCTAssertEqual(s.diskItems, 123)
    XCTAssertEqual(s.productSections, 3)
    XCTAssertEqual(s.eulaSections, 2)
    let per = Dictionary(uniqueKeysWithValues: s.perConfiguration.map { ($0.0, ($0.1, $0.2)) })
    XCTAssertEqual(per["xlarge"]?.0, 24)
    XCTAssertEqual(per["xlarge"]?.1, 49152)
    XCTAssertEqual(per["infrastructure"]?.0, 2)
    XCTAssertEqual(per["infrastructure"]?.1, 2048)
  }

  func testCiscoOverrideItems() throws {
    let c = try OVFDescriptor.parse(try sample("c8000v.ovf")).systems[0].perConfiguration
    XCTAssertEqual(c.map(\.0), ["1CPU-4GB-8GB", "2CPU-4GB-8GB", "4CPU-4GB-8GB", "4CPU-8GB-8GB", "1CPU-4GB-16GB", "2CPU-4GB-16GB",
                                "4CPU-4GB-16GB", "4CPU-8GB-16GB"])
    XCTAssertEqual(c.map(\.1), [1, 2, 4, 4, 1, 2, 4, 4])
    XCTAssertEqual(c.map(\.2), [4096, 4096, 4096, 8192, 4096, 4096, 4096, 8192])
    let iosv = try OVFDescriptor.parse(try sample("iosv.ovf")).systems[0].perConfiguration
    XCTAssertEqual(iosv.map(\.2), [384, 1024, 3072, 3072])
  }

  func testSampleManifestsParseAndVerify() throws {
    for (mf, ovf, alg) in [("ttylinux-pc_i486-16.1.mf", "ttylinux-pc_i486-16.1.ovf", Digest.Algorithm.sha1),
                           ("ubuntu.2.0.mf", "ubuntu.2.0.ovf", .sha256)] {
      let m = OVFManifest.parse(try sample(mf))
      XCTAssertEqual(m.malformedLines, [], mf)
      XCTAssertEqual(m.entries.count, 2, mf)
      XCTAssertEqual(m.entries.first?.algorithm, alg)
      XCTAssertEqual(m.entries.first?.name, ovf)
      let digest = Digest(alg)
      digest.update(try sample(ovf))
      XCTAssertEqual(m.entries.first?.digest, digest.finalHex(), "\(mf) digest of \(ovf)")
    }
  }

  func testSamplesThroughTheProbe() throws {
    guard let dir = OVFTests.samples else { throw XCTSkip("shared OVF samples are not available") }
    let path = dir.appendingPathComponent("ovf/xencenter-sample_app.ovf").path
    let result = Inspector.inspect(try FileSource(path: path))
    guard let info = result.info else { return XCTFail("\(result.outcome)") }
    XCTAssertEqual(info.probe, "ovf")
    XCTAssertEqual(info.containerFormat, .ovf)
    XCTAssertEqual(info.diskFormat, .vhd)
    XCTAssertEqual(info.virtualSize, 10485760)
    XCTAssertEqual(info.externalReferences.map(\.name), ["5936bc8c-20ae-4052-9083-b8e5b96dc683.vhd"])
    XCTAssertTrue(info.notes.contains { $0.contains("utf-16") })
  }

  // MARK: hostile XML

  func ovf(_ body: String, prolog: String = "") -> [UInt8] {
    Array("<?xml version=\"1.0\"?>\(prolog)<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\">\(body)</Envelope>".utf8)
  }

  func testBillionLaughsIsNeverExpanded() throws {
    var dtd = "<!DOCTYPE Envelope [<!ENTITY lol \"lol\">"
    for i in 1...9 { dtd += "<!ENTITY lol\(i) \"" + String(repeating: "&lol\(i - 1 == 0 ? "" : String(i - 1));", count: 10) + "\">" }
    dtd += "]>"
    let bytes = ovf("<References><File ovf:id=\"f\" ovf:href=\"&lol9;\"/></References>", prolog: dtd)
    let d = try OVFDescriptor.parse(bytes)
    XCTAssertEqual(d.files.first?.href, "&lol9;")
    XCTAssertNotNil(d.doctypeOffset)
    let f = d.findings(descriptorName: "x.ovf")
    XCTAssertEqual(f.map(\.id), ["ovf.doctype"])
    XCTAssertEqual(f.first?.severity, .unsafe)
  }

  func testExternalEntityDoctypeIsSkipped() throws {
    let bytes = ovf("<Name>&xxe;</Name>", prolog: "<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>")
    let doc = try XML.parse(bytes)
    XCTAssertEqual(doc.unexpandedEntities, 1)
    XCTAssertNotNil(doc.doctypeOffset)
  }

  func testExternalFileHrefs() throws {
    for href in ["http://example.com/disk.vmdk", "/etc/shadow", "../../disk.vmdk", "C:\\disk.vmdk", "\\\\server\\share\\d.vmdk", "file:disk"] {
      let d = try OVFDescriptor.parse(ovf("<References><File ovf:id=\"f\" ovf:href=\"\(href)\"/></References>"))
      let f = d.findings(descriptorName: "x")
      XCTAssertEqual(f.map(\.id), ["ovf.external-file"], href)
      XCTAssertEqual(f.first?.severity, .unsafe)
    }
    for href in ["disk.vmdk", "sub/disk.vmdk", "#DISK_ID#/#VOL_ID#", "a..b.vmdk"] {
      let d = try OVFDescriptor.parse(ovf("<References><File ovf:id=\"f\" ovf:href=\"\(href)\"/></References>"))
      XCTAssertEqual(d.findings(descriptorName: "x").map(\.id), [], href)
    }
  }

  func testStandaloneExternalHrefThroughProbe() throws {
    let bytes = ovf("<References><File ovf:id=\"f\" ovf:href=\"https://evil.example/d.vmdk\"/></References>")
    let result = Inspector.inspect(MemorySource(bytes))
    XCTAssertEqual(result.info?.containerFormat, .ovf)
    XCTAssertEqual(result.allFindings.map(\.id), ["ovf.external-file"])
    XCTAssertEqual(Policy().verdict(result.allFindings), .unsafe)
  }

  func testDeepNestingIsRefused() {
    let deep = String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100)
    XCTAssertThrowsError(try XML.parse(ovf(deep))) { e in
      XCTAssertEqual((e as? ImageError)?.kind, .limitExceeded)
    }
    let ok = String(repeating: "<a>", count: 50) + String(repeating: "</a>", count: 50)
    XCTAssertNoThrow(try XML.parse(ovf(ok)))
  }

  func testTooManyAttributesAndElements() {
    let attrs = (0..<300).map { "a\($0)=\"v\"" }.joined(separator: " ")
    XCTAssertThrowsError(try XML.parse(ovf("<x \(attrs)/>"))) { e in XCTAssertEqual((e as? ImageError)?.kind, .limitExceeded) }
    let many = String(repeating: "<x/>", count: XML.Limits.maxElements + 1)
    XCTAssertThrowsError(try XML.parse(ovf(many))) { e in XCTAssertEqual((e as? ImageError)?.kind, .limitExceeded) }
  }

  func testHugeAttributeValueAndOversizedDescriptor() throws {
    let big = String(repeating: "x", count: 3 << 20)
    let d = try OVFDescriptor.parse(ovf("<References><File ovf:id=\"f\" ovf:href=\"\(big)\"/></References>"))
    XCTAssertEqual(d.files.first?.href.utf8.count, 3 << 20)
    let huge = String(repeating: "y", count: 5 << 20)
    XCTAssertThrowsError(try OVFDescriptor.parse(ovf("<!-- \(huge) -->"))) { e in
      XCTAssertEqual((e as? ImageError)?.kind, .limitExceeded)
    }
  }

  func testUnterminatedAndMismatched() {
    for bad in ["<Envelope><References>", "<Envelope><References></Envelope>", "<Envelope attr=\"x></Envelope>",
                "<Envelope><!-- never closed", "<Envelope><x a=1/></Envelope>", "<Envelope", "<Envelope></Envelope><Second/>",
                "<Envelope><![CDATA[ open", "<Envelope><x a=\"<\"/></Envelope>", "<Envelope></x>", "<!DOCTYPE x [ <Envelope/>"] {
      XCTAssertThrowsError(try XML.parse(Array(bad.utf8)), bad) { e in XCTAssertNotNil(e as? ImageError, bad) }
    }
  }

  func testMalformedEnvelopeIsReportedNotIgnored() {
    // The magic (an Envelope root) matched: the probe throws, the inspector reports malformed.
    let result = Inspector.inspect(MemorySource(Array("<?xml version=\"1.0\"?><Envelope xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\"><References>".utf8)))
    guard case let .malformed(e) = result.outcome else { return XCTFail("\(result.outcome)") }
    XCTAssertEqual(e.format, "ovf")
    // Other XML is not an OVF.
    XCTAssertNil(try OVFProbe.probe(try ProbeContext(source: MemorySource(Array("<html><body>Envelope</body></html>".utf8)))))
  }

  func testSoapEnvelopeIsNotOVF() throws {
    let soap = Array("<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body/></soap:Envelope>".utf8)
    XCTAssertNil(try OVFProbe.probe(try ProbeContext(source: MemorySource(soap))))
    let broken = Array("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>".utf8)
    XCTAssertNil(try OVFProbe.probe(try ProbeContext(source: MemorySource(broken))))
    // OVF 0.9 without any namespace still counts when it has OVF sections.
    let bare = Array("<Envelope><References/><VirtualSystem/></Envelope>".utf8)
    XCTAssertEqual(try OVFProbe.probe(try ProbeContext(source: MemorySource(bare)))?.containerFormat, .ovf)
  }

  func testNonUTF8AndUTF16() throws {
    var bytes = ovf("<VirtualSystem ovf:id=\"vm\"><Name>caf\u{e9}</Name></VirtualSystem>")
    if let i = bytes.firstIndex(of: 0xc3) { bytes[i] = 0xff }  // break the UTF-8
    let d = try OVFDescriptor.parse(bytes)
    XCTAssertEqual(d.systems.count, 1)
    XCTAssertNotNil(d.systems[0].name)
    // UTF-16LE with a BOM is transcoded.
    let text = String(decoding: ovf("<VirtualSystem ovf:id=\"u16\"/>"), as: UTF8.self)
    var u16: [UInt8] = [0xff, 0xfe]
    for u in text.utf16 { u16.append(UInt8(u & 0xff)); u16.append(UInt8(u >> 8)) }
    XCTAssertEqual(try OVFDescriptor.parse(u16).systems.first?.id, "u16")
  }

  func testEntitiesAndCharacterReferences() throws {
    let d = try OVFDescriptor.parse(ovf("<VirtualSystem ovf:id=\"a&amp;b&#x41;&#66;&lt;\"><Name>x &gt; y &unknown;</Name></VirtualSystem>"))
    XCTAssertEqual(d.systems.first?.id, "a&bAB<")
    XCTAssertEqual(d.systems.first?.name, "x > y &unknown;")
    // A reference to a character XML does not allow (NUL, a surrogate, beyond U+10FFFF) is a
    // fatal error for libxml2 and expat alike: the document is malformed, not patched with '?'.
    for bad in ["&#0;", "&#xD800;", "&#x110000;", "&#99999999999;", "&#xZZ;"] {
      XCTAssertThrowsError(try OVFDescriptor.parse(ovf("<VirtualSystem ovf:id=\"a\"><Name>x \(bad)</Name></VirtualSystem>")), bad)
    }
  }

  func testCapacityUnits() {
    XCTAssertEqual(OVFDescriptor.unitMultiplier("byte * 2^30"), 1 << 30)
    XCTAssertEqual(OVFDescriptor.unitMultiplier("byte*2^20"), 1 << 20)
    XCTAssertEqual(OVFDescriptor.unitMultiplier("byte"), 1)
    XCTAssertEqual(OVFDescriptor.unitMultiplier(nil), 1)
    XCTAssertEqual(OVFDescriptor.unitMultiplier("MegaBytes"), 1 << 20)
    XCTAssertEqual(OVFDescriptor.unitMultiplier("byte * 10^3"), 1000)
    XCTAssertNil(OVFDescriptor.unitMultiplier("byte * 2^64"))
    XCTAssertNil(OVFDescriptor.unitMultiplier("furlongs"))
    // An overflowing capacity is an error naming the field, not a trap.
    XCTAssertThrowsError(try OVFDescriptor.parse(ovf("<DiskSection><Disk ovf:diskId=\"d\" ovf:capacity=\"18446744073709551615\" ovf:capacityAllocationUnits=\"byte * 2^30\"/></DiskSection>")))
    // A property reference is kept as text.
    let d = try? OVFDescriptor.parse(ovf("<DiskSection><Disk ovf:diskId=\"d\" ovf:capacity=\"${disk.size}\"/></DiskSection>"))
    XCTAssertNil(d?.disks.first?.capacity)
    XCTAssertEqual(d?.disks.first?.capacityText, "${disk.size}")
  }

  func testManifestSyntaxes() {
    let m = OVFManifest.parse(Array("""
      SHA1(a.ovf)= 06271f767e0d5671c67e4edeaa2c157cabb66c2b
      SHA256 (b c.vmdk) = 4A218C15A1E8AED26CB0A2A533562E85A9F28956A6666181D0C9BB7BA58B5B06\r
      SHA512(d)= \(String(repeating: "ab", count: 64))
      MD5(e)= d41d8cd98f00b204e9800998ecf8427e
      SHA1(f)= nothex
      garbage

      """.utf8))
    XCTAssertEqual(m.entries.map(\.name), ["a.ovf", "b c.vmdk", "d"])
    XCTAssertEqual(m.entries.map(\.algorithm), [.sha1, .sha256, .sha512])
    XCTAssertEqual(m.entries[1].digest, "4a218c15a1e8aed26cb0a2a533562e85a9f28956a6666181d0c9bb7ba58b5b06")
    XCTAssertEqual(m.malformedLines, [4, 5, 6])
  }
}
