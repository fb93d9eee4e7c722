@testable import FormatProbe

/// Little-endian byte helpers for hand-built images.
extension Array where Element == UInt8 {
  mutating func vkPut32(_ v: UInt32, at o: Int) { for i in 0..<4 { self[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
  mutating func vkPut64(_ v: UInt64, at o: Int) { for i in 0..<8 { self[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
  mutating func vkPut16(_ v: UInt16, at o: Int) { self[o] = UInt8(v & 0xff); self[o + 1] = UInt8(v >> 8) }
  mutating func vkPut(_ b: [UInt8], at o: Int) { for (i, x) in b.enumerated() { self[o + i] = x } }
  mutating func vkPad(to n: Int) { if count < n { append(contentsOf: [UInt8](repeating: 0, count: n - count)) } }
}

/// Builds hosted sparse VMDK extents from the spec, one field per property so single-field
/// mutations are easy. Layout (sectors): 0 header, 1.. descriptor, then RGD + RGTs, GD + GTs,
/// grains from `overHead`. `streamOptimized()` lays out a VMware-style stream instead.
struct SparseBuilder {
  var magic: [UInt8] = Array("KDMV".utf8)  // magicNumber
  var version: UInt32 = 1                  // 1, 2 (zeroed-grain GTEs) or 3 (streamOptimized)
  var flags: UInt32 = 0x3                  // bit 0 newline test, bit 1 redundant GD
  var capacity: UInt64 = 2048              // sectors: 1 MiB
  var grainSize: UInt64 = 128              // sectors: 64 KiB grains
  var descriptorOffset: UInt64 = 1         // sector of the embedded descriptor
  var descriptorSize: UInt64 = 20          // sectors reserved for it
  var numGTEsPerGT: UInt32 = 512           // fixed by the spec
  var rgdOffset: UInt64? = nil             // nil: computed
  var gdOffset: UInt64? = nil              // nil: computed
  var overHead: UInt64 = 128               // sectors of metadata before the first grain
  var uncleanShutdown: UInt8 = 0
  var newline: [UInt8] = [0x0a, 0x20, 0x0d, 0x0a]  // single, non, double1, double2
  var compressAlgorithm: UInt16 = 0
  var createType = "monolithicSparse"
  var extentLines = ["RW 2048 SPARSE \"test.vmdk\""]
  var extraDescriptorLines: [String] = []
  var descriptorText: String? = nil        // replaces the generated descriptor
  /// Guest grain indices to allocate, in file order.
  var grains: [Int] = [0, 3]

  var descriptor: String {
    descriptorText ?? ([
      "# Disk DescriptorFile", "version=1", "CID=12345678", "parentCID=ffffffff", "createType=\"\(createType)\"", "",
      "# Extent description",
    ] + extentLines + ["", "# The Disk Data Base", "#DDB", "", "ddb.virtualHWVersion = \"4\"",
                       "ddb.geometry.cylinders = \"2\"", "ddb.geometry.heads = \"16\"", "ddb.geometry.sectors = \"63\"",
                       "ddb.adapterType = \"ide\""] + extraDescriptorLines).joined(separator: "\n") + "\n"
  }

  var gdEntries: Int {
    let (cover, o) = grainSize.multipliedReportingOverflow(by: UInt64(numGTEsPerGT))
    guard !o, cover > 0 else { return 0 }
    return Int(min(capacity / cover + (capacity % cover == 0 ? 0 : 1), 1 << 20))
  }
  var gdSectors: Int { (gdEntries * 4 + 511) / 512 }
  var gtSectors: Int { (Int(numGTEsPerGT) * 4 + 511) / 512 }
  var computedRGD: UInt64 { rgdOffset ?? max(descriptorOffset + descriptorSize, 1) }
  var computedGD: UInt64 { gdOffset ?? computedRGD + UInt64(gdSectors + gdEntries * gtSectors) }

  func header(gd: UInt64? = nil) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 512)
    h.vkPut(magic, at: 0)
    h.vkPut32(version, at: 4)
    h.vkPut32(flags, at: 8)
    h.vkPut64(capacity, at: 12)
    h.vkPut64(grainSize, at: 20)
    h.vkPut64(descriptorOffset, at: 28)
    h.vkPut64(descriptorSize, at: 36)
    h.vkPut32(numGTEsPerGT, at: 44)
    h.vkPut64(rgdOffset ?? computedRGD, at: 48)
    h.vkPut64(gd ?? gdOffset ?? computedGD, at: 56)
    h.vkPut64(overHead, at: 64)
    h[72] = uncleanShutdown
    h.vkPut(newline, at: 73)
    h.vkPut16(compressAlgorithm, at: 77)
    return h
  }

  /// A monolithicSparse extent with GD, redundant GD and the listed grains allocated.
  func image() -> [UInt8] {
    var out = header()
    if descriptorOffset > 0 {
      out.vkPad(to: Int(descriptorOffset) * 512)
      out.append(contentsOf: Array(descriptor.utf8).prefix(Int(descriptorSize) * 512))
    }
    out.vkPad(to: Int(overHead) * 512)
    // Grain tables: grain g is the k-th allocated, at overHead + k*grainSize.
    var gt = [UInt32](repeating: 0, count: gdEntries * Int(numGTEsPerGT))
    for (k, g) in grains.enumerated() where g < gt.count {
      gt[g] = UInt32(overHead + UInt64(k) * grainSize)
    }
    for (dir, tablesStart) in [(Int(computedRGD), Int(computedRGD) + gdSectors), (Int(computedGD), Int(computedGD) + gdSectors)] {
      for t in 0..<gdEntries {
        out.vkPut32(UInt32(tablesStart + t * gtSectors), at: dir * 512 + t * 4)
        for e in 0..<Int(numGTEsPerGT) {
          out.vkPut32(gt[t * Int(numGTEsPerGT) + e], at: (tablesStart + t * gtSectors) * 512 + e * 4)
        }
      }
    }
    for (k, g) in grains.enumerated() {
      let start = Int(overHead + UInt64(k) * grainSize) * 512
      out.vkPad(to: start + Int(grainSize) * 512)
      out[start] = UInt8(truncatingIfNeeded: g + 1)
    }
    return out
  }

  /// Guest grain `g` compressed as a zlib stream of stored (uncompressed) deflate blocks: valid
  /// zlib that any inflater accepts, built without a compressor.
  func streamPayload(_ g: Int) -> [UInt8] {
    let data = [UInt8](repeating: UInt8(truncatingIfNeeded: g + 1), count: Int(grainSize) * 512)
    var out: [UInt8] = [0x78, 0x01]
    var i = 0
    repeat {
      let n = min(65535, data.count - i)
      let final: UInt8 = i + n == data.count ? 1 : 0
      out += [final, UInt8(n & 0xff), UInt8(n >> 8), UInt8(~n & 0xff), UInt8((~n >> 8) & 0xff)]
      out += data[i..<(i + n)]
      i += n
    } while i < data.count
    var a: UInt32 = 1, b: UInt32 = 0
    for x in data { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
    let adler = b << 16 | a
    out += [UInt8(adler >> 24), UInt8((adler >> 16) & 0xff), UInt8((adler >> 8) & 0xff), UInt8(adler & 0xff)]
    return out
  }

  /// Sectors of the grain markers in `streamOptimized()`, in `grains` order.
  var streamGrainSectors: [Int] {
    var sector = Int(overHead)
    return grains.map { g in
      defer { sector += (12 + streamPayload(g).count + 511) / 512 }
      return sector
    }
  }

  /// Sector of the first grain-table marker in `streamOptimized()`.
  var streamGTMarkerSector: Int {
    grains.reduce(Int(overHead)) { $0 + (12 + streamPayload($1).count + 511) / 512 }
  }

  /// A VMware-style streamOptimized extent: header with gdOffset = GD_AT_END, grain markers,
  /// a GT marker + GT, a GD marker + GD, footer marker + footer header, end-of-stream marker.
  /// `mutateFooter` edits the footer header before it is written.
  func streamOptimized(mutateFooter: (inout [UInt8]) -> Void = { _ in }, footerMarkerType: UInt32 = 3,
                       eos: Bool = true) -> [UInt8]
  {
    var b = self
    b.version = 3
    b.flags = 0x30001
    b.compressAlgorithm = 1
    b.createType = "streamOptimized"
    var out = b.header(gd: 0xffff_ffff_ffff_ffff)
    out.append(contentsOf: Array(b.descriptor.utf8))
    out.vkPad(to: Int(overHead) * 512)
    var gt = [UInt32](repeating: 0, count: gdEntries * Int(numGTEsPerGT))
    for g in grains {
      let sector = out.count / 512
      gt[g] = UInt32(sector)
      var marker = [UInt8](repeating: 0, count: 12)
      marker.vkPut64(UInt64(g) * grainSize, at: 0)
      let payload = b.streamPayload(g)
      marker.vkPut32(UInt32(payload.count), at: 8)
      out.append(contentsOf: marker + payload)
      out.vkPad(to: (out.count + 511) / 512 * 512)
    }
    var gtStarts: [Int] = []
    for t in 0..<gdEntries {
      var m = [UInt8](repeating: 0, count: 512)
      m.vkPut64(UInt64(gtSectors), at: 0)
      m.vkPut32(1, at: 12)  // GT marker
      out.append(contentsOf: m)
      gtStarts.append(out.count / 512)
      var table = [UInt8](repeating: 0, count: gtSectors * 512)
      for e in 0..<Int(numGTEsPerGT) { table.vkPut32(gt[t * Int(numGTEsPerGT) + e], at: e * 4) }
      out.append(contentsOf: table)
    }
    var m = [UInt8](repeating: 0, count: 512)
    m.vkPut64(UInt64(gdSectors), at: 0)
    m.vkPut32(2, at: 12)  // GD marker
    out.append(contentsOf: m)
    let gdSector = out.count / 512
    var gd = [UInt8](repeating: 0, count: gdSectors * 512)
    for (t, s) in gtStarts.enumerated() { gd.vkPut32(UInt32(s), at: t * 4) }
    out.append(contentsOf: gd)
    var fm = [UInt8](repeating: 0, count: 512)
    fm.vkPut64(1, at: 0)
    fm.vkPut32(footerMarkerType, at: 12)
    out.append(contentsOf: fm)
    var footer = b.header(gd: UInt64(gdSector))
    mutateFooter(&footer)
    out.append(contentsOf: footer)
    out.append(contentsOf: [UInt8](repeating: eos ? 0 : 1, count: 512))
    return out
  }
}

enum VMDKFamily {
  static func ctx(_ bytes: [UInt8]) throws -> ProbeContext { try ProbeContext(source: MemorySource(bytes)) }

  static func info<P: FormatProbe>(_ p: P.Type, _ bytes: [UInt8]) throws -> ImageInfo? {
    try P.probe(try ctx(bytes))
  }

  static func error<P: FormatProbe>(_ p: P.Type, _ bytes: [UInt8]) -> ImageError? {
    do {
      _ = try P.probe(try ctx(bytes))
      return nil
    } catch let e as ImageError {
      return e
    } catch {
      return nil
    }
  }

  static func ids(_ info: ImageInfo?) -> [String] { info?.findings.map(\.id) ?? [] }
}
