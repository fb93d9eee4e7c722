/// QED, the QEMU Enhanced Disk format (QEMU 0.14, 2010; deprecated in favour of qcow2).
///
/// Reference: QEMU `docs/interop/qed_spec.txt` ("QED Image Format"). Detection: the magic
/// `QED\0` at offset 0. Everything reported lies in the 64-byte little-endian header and the
/// backing file name inside the header clusters.
public enum QEDProbe: FormatProbe {
  public static let id = "qed"
  public static let role = ProbeRole.image
  static let format = "qed"
  static let magic: [UInt8] = [0x51, 0x45, 0x44, 0x00]

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let r = ctx.headReader(format)
    guard r.matches(magic, at: 0) else { return nil }
    let h = try QEDHeader.decode(r)
    try h.validate(fileSize: ctx.size)
    var info = ImageInfo(probe: id, qemuFormat: "qed", diskFormat: .qed, subformat: nil, virtualSize: h.imageSize)
    info.clusterSize = UInt64(h.clusterSize)
    info.dirty = h.features & QEDHeader.needCheck != 0
    info.encrypted = false
    var fs = JSONObject()
    fs.set("table-size", UInt64(h.tableSize))
    fs.set("header-size", UInt64(h.headerSize))
    fs.set("features", h.features)
    fs.set("compat-features", h.compatFeatures)
    fs.set("autoclear-features", h.autoclearFeatures)
    fs.set("l1-table-offset", h.l1TableOffset)
    info.formatSpecific = fs
    if h.features & QEDHeader.backingFile != 0 {
      let name = Text.utf8(try ctx.reader(at: UInt64(h.backingFilenameOffset), count: Int(h.backingFilenameSize), format,
                                          "backing file name").bytes)
      info.backingFilename = name
      if h.features & QEDHeader.backingFormatNoProbe != 0 { info.backingFormat = "raw" }
      info.externalReferences.append(ExternalReference(kind: "backing-file", name: name, offset: UInt64(h.backingFilenameOffset)))
      info.findings.append(Finding("qed.backing-file", .unsafe, field: "backing_filename_offset", offset: 56,
                                   "the image reads unallocated clusters from backing file '\(name)', outside the image"))
    }
    if info.dirty == true {
      info.findings.append(Finding("qed.dirty", .warning, field: "features", offset: 16,
                                   "the need-check feature is set: the image was not closed cleanly and its tables may be inconsistent"))
    }
    let tableBytes = UInt64(h.tableSize) * UInt64(h.clusterSize)
    if h.l1TableOffset > ctx.size || tableBytes > ctx.size - h.l1TableOffset {
      info.findings.append(Finding("qed.truncated", .corrupt, field: "l1_table_offset", offset: 40,
                                   "the L1 table at \(hex(h.l1TableOffset)) (\(tableBytes) bytes) ends beyond the end of the file (\(ctx.size) bytes)"))
    }
    info.findings.append(banned)
    return info
  }

  static let banned = Finding(
    "qed.banned", .unsafe, field: "magic", offset: 0,
    "QED has no image-service disk_format and QEMU deprecated it (qcow2 does everything it did); few tools check it, so an image service must not accept it",
    fix: "qemu-img convert -f qed -O qcow2")
}

enum QEDLimits {
  /// Clusters of 4 KiB to 64 MiB, a power of two (spec: QED_MIN/MAX_CLUSTER_SIZE).
  static let clusterSize: ClosedRange<UInt32> = 4096...(64 << 20)
  /// Tables of 1 to 16 clusters, a power of two (spec: QED_MIN/MAX_TABLE_SIZE).
  static let tableSize: ClosedRange<UInt32> = 1...16
  /// Backing file names of at most 1023 bytes (QEMU's buffer).
  static let maxBackingFileName: UInt32 = 1023
}

/// The QED header, little-endian:
///
///     offset size field
///          0    4 magic                    "QED\0"
///          4    4 cluster_size             bytes
///          8    4 table_size               clusters per L1/L2 table
///         12    4 header_size              clusters in the header
///         16    8 features                 bit 0 backing file, 1 need check, 2 backing format no probe
///         24    8 compat_features
///         32    8 autoclear_features
///         40    8 l1_table_offset
///         48    8 image_size               virtual size in bytes
///         56    4 backing_filename_offset
///         60    4 backing_filename_size
struct QEDHeader: Sendable {
  static let backingFile: UInt64 = 1 << 0
  static let needCheck: UInt64 = 1 << 1
  static let backingFormatNoProbe: UInt64 = 1 << 2
  static let knownFeatures: UInt64 = 0x7

  var clusterSize: UInt32
  var tableSize: UInt32
  var headerSize: UInt32
  var features: UInt64
  var compatFeatures: UInt64
  var autoclearFeatures: UInt64
  var l1TableOffset: UInt64
  var imageSize: UInt64
  var backingFilenameOffset: UInt32
  var backingFilenameSize: UInt32

  static func decode(_ head: ByteReader) throws(ImageError) -> QEDHeader {
    var r = head
    try r.seek(to: 4, "cluster_size")
    return QEDHeader(clusterSize: try r.u32LE("cluster_size"), tableSize: try r.u32LE("table_size"),
                     headerSize: try r.u32LE("header_size"), features: try r.u64LE("features"),
                     compatFeatures: try r.u64LE("compat_features"), autoclearFeatures: try r.u64LE("autoclear_features"),
                     l1TableOffset: try r.u64LE("l1_table_offset"), imageSize: try r.u64LE("image_size"),
                     backingFilenameOffset: try r.u32LE("backing_filename_offset"),
                     backingFilenameSize: try r.u32LE("backing_filename_size"))
  }

  /// QEMU's checks (block/qed.c, bdrv_qed_do_open) plus the spec's.
  func validate(fileSize: UInt64) throws(ImageError) {
    let f = "qed"
    guard QEDLimits.clusterSize.contains(clusterSize), Checked.isPowerOfTwo(UInt64(clusterSize)) else {
      throw ImageError(.invalidField, format: f, field: "cluster_size", offset: 4, "is \(clusterSize); allowed powers of two 4 KiB..64 MiB")
    }
    guard QEDLimits.tableSize.contains(tableSize), Checked.isPowerOfTwo(UInt64(tableSize)) else {
      throw ImageError(.invalidField, format: f, field: "table_size", offset: 8, "is \(tableSize); allowed powers of two 1..16")
    }
    let unknown = features & ~QEDHeader.knownFeatures
    guard unknown == 0 else {
      throw ImageError(.unsupported, format: f, field: "features", offset: 16, "has unknown feature bits \(hex(unknown))")
    }
    guard headerSize > 0, UInt64(headerSize) * UInt64(clusterSize) <= UInt64(UInt32.max) else {
      throw ImageError(.invalidField, format: f, field: "header_size", offset: 12, "is \(headerSize) clusters")
    }
    guard imageSize % 512 == 0 else {
      throw ImageError(.invalidField, format: f, field: "image_size", offset: 48, "is \(imageSize), not a multiple of 512")
    }
    // Largest image the two-level table can map: entries^2 * cluster size.
    let entries = UInt64(tableSize) * UInt64(clusterSize) / 8
    let (mapped, o1) = entries.multipliedReportingOverflow(by: entries)
    let (maxSize, o2) = mapped.multipliedReportingOverflow(by: UInt64(clusterSize))
    if !o1, !o2, imageSize > maxSize {
      throw ImageError(.invalidField, format: f, field: "image_size", offset: 48, "is \(imageSize), more than the tables can map (\(maxSize))")
    }
    let headerBytes = UInt64(headerSize) * UInt64(clusterSize)
    guard l1TableOffset % UInt64(clusterSize) == 0, l1TableOffset >= headerBytes else {
      throw ImageError(.invalidField, format: f, field: "l1_table_offset", offset: 40,
                       "is \(hex(l1TableOffset)); it must be cluster aligned and after the \(headerBytes)-byte header")
    }
    if features & QEDHeader.backingFile != 0 {
      guard backingFilenameSize <= QEDLimits.maxBackingFileName else {
        throw ImageError(.limitExceeded, format: f, field: "backing_filename_size", offset: 60,
                         "is \(backingFilenameSize); at most 1023 bytes")
      }
      guard backingFilenameOffset >= 64, UInt64(backingFilenameOffset) + UInt64(backingFilenameSize) <= headerBytes else {
        throw ImageError(.invalidField, format: f, field: "backing_filename_offset", offset: 56,
                         "is \(hex(backingFilenameOffset)) (+\(backingFilenameSize) bytes), outside the \(headerBytes)-byte header")
      }
    }
  }
}

// MARK: deep check

enum QEDCheckLimits {
  /// Host clusters tracked in the used-cluster bitmap (1 bit each): 2^28 clusters is 32 MiB and
  /// covers a 1 TiB file at QED's smallest (4 KiB) clusters.
  static let maxClusters: UInt64 = 1 << 28
  /// L2 entries scanned in all (QED L2 tables are never shared, so this only stops crafted L1s).
  static let maxEntriesScanned: UInt64 = 1 << 28
  /// Individual findings kept per id; the rest are summed up in one more finding.
  static let findingsPerId = 8
}

extension QEDProbe: DeepCheckable {
  /// QEMU's QED check (block/qed-check.c): every L1 entry names an L2 table inside the file,
  /// every L2 entry a data cluster inside the file, no cluster is used twice, and clusters
  /// nothing references are leaks. Counts use qemu-img check's keys.
  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var report = CheckReport()
    let h: QEDHeader
    do {
      h = try QEDHeader.decode(ctx.headReader(format))
      try h.validate(fileSize: ctx.size)
    } catch {
      report.findings.append(Finding(corrupt: error))
      report.counts.set("check-errors", 1)
      return report
    }
    var c = QEDChecker(ctx: ctx, h: h)
    c.run()
    report.findings = c.findings
    for (id, n) in c.perId.sorted(by: { $0.key < $1.key }) where n > QEDCheckLimits.findingsPerId {
      report.findings.append(Finding(id, .corrupt, "\(n - QEDCheckLimits.findingsPerId) more \(id) problems not listed (\(n) in all)"))
    }
    report.counts.set("total-clusters", Checked.ceilDiv(h.imageSize, UInt64(h.clusterSize)))
    report.counts.set("check-errors", c.checkErrors)
    if c.tracked { report.counts.set("leaks", c.leaks) }
    report.counts.set("corruptions", c.corruptions)
    report.counts.set("allocated-clusters", c.allocated)
    report.counts.set("fragmented-clusters", c.fragmented)
    return report
  }
}

struct QEDChecker {
  let ctx: ProbeContext
  let h: QEDHeader
  let clusterSize: UInt64
  let headerBytes: UInt64
  let tableBytes: UInt64
  let fileClusters: UInt64
  /// One bit per host cluster: used by the header, a table or data.
  var used: [UInt64] = []
  var tracked: Bool { !used.isEmpty }
  var corruptions = 0
  var leaks = 0
  var checkErrors = 0
  var allocated = 0
  var fragmented = 0
  var scanned: UInt64 = 0
  var findings: [Finding] = []
  var perId: [String: Int] = [:]

  init(ctx: ProbeContext, h: QEDHeader) {
    self.ctx = ctx
    self.h = h
    clusterSize = UInt64(h.clusterSize)
    headerBytes = UInt64(h.headerSize) * clusterSize
    tableBytes = UInt64(h.tableSize) * clusterSize
    fileClusters = Checked.ceilDiv(ctx.size, clusterSize)
    if fileClusters <= QEDCheckLimits.maxClusters {
      used = [UInt64](repeating: 0, count: Int(Checked.ceilDiv(fileClusters, 64)))
    }
  }

  mutating func corrupt(_ id: String, offset: UInt64?, _ message: String) {
    corruptions += 1
    let n = perId[id, default: 0]
    perId[id] = n + 1
    if n < QEDCheckLimits.findingsPerId { findings.append(Finding(id, .corrupt, offset: offset, message)) }
  }

  /// A cluster offset QEMU accepts: aligned, after the header, before the end of the file.
  func valid(_ offset: UInt64) -> Bool {
    offset & (clusterSize - 1) == 0 && offset >= headerBytes && offset < ctx.size
  }

  /// Marks `n` clusters from `offset` used; a cluster used twice is a corruption (QEMU counts each).
  mutating func markUsed(_ offset: UInt64, clusters n: UInt64, _ what: String) -> Bool {
    guard tracked else { return true }
    var ok = true
    var k = offset / clusterSize
    for _ in 0..<n where k < fileClusters {
      let word = Int(k / 64), bit = UInt64(1) << (k % 64)
      if used[word] & bit != 0 {
        corrupt("qed.cluster-reused", offset: k * clusterSize, "cluster \(k) is used twice (again by \(what))")
        ok = false
      }
      used[word] |= bit
      k += 1
    }
    return ok
  }

  mutating func readTable(_ offset: UInt64, _ what: String) -> [UInt8]? {
    do {
      return try ctx.source.readExactly(at: offset, count: Int(tableBytes), format: "qed", field: what)
    } catch {
      if error.kind == .truncated {
        corrupt("qed.truncated", offset: offset, "\(what) at \(hex(offset)) is cut off by the end of the file")
      } else {
        checkErrors += 1
        let n = perId["qed.check-error", default: 0]
        perId["qed.check-error"] = n + 1
        if n == 0 { findings.append(Finding("qed.check-error", .warning, offset: offset, "reading \(what) failed: \(error.description)")) }
      }
      return nil
    }
  }

  mutating func run() {
    if !tracked {
      findings.append(Finding("qed.check-limit", .warning,
                              "the file has more than \(QEDCheckLimits.maxClusters) clusters; tables are checked but leaks are not counted"))
    }
    _ = markUsed(0, clusters: UInt64(h.headerSize), "the header")
    guard valid(h.l1TableOffset), h.l1TableOffset + tableBytes <= ctx.size else {
      corrupt("qed.truncated", offset: 40, "the L1 table at \(hex(h.l1TableOffset)) lies outside the file")
      return
    }
    _ = markUsed(h.l1TableOffset, clusters: UInt64(h.tableSize), "the L1 table")
    guard let l1 = readTable(h.l1TableOffset, "L1 table") else { return }
    let entries = Int(tableBytes / 8)
    for i in 0..<entries {
      let l2 = l1.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
      guard l2 != 0 else { continue }
      let entryOffset = h.l1TableOffset + UInt64(i) * 8
      let (end, overflow) = l2.addingReportingOverflow(tableBytes - clusterSize)
      guard valid(l2), !overflow, valid(end) else {
        corrupt("qed.l1-entry", offset: entryOffset, "L1 entry \(i) names an L2 table at \(hex(l2)) outside the file or not cluster aligned")
        continue
      }
      guard markUsed(l2, clusters: UInt64(h.tableSize), "the L2 table of L1 entry \(i)") else { continue }
      guard scanned + UInt64(entries) <= QEDCheckLimits.maxEntriesScanned else {
        findings.append(Finding("qed.check-limit", .warning, "the L1 table names more L2 entries than the check scans"))
        return
      }
      scanned += UInt64(entries)
      guard let table = readTable(l2, "L2 table at \(hex(l2))") else { continue }
      var last: UInt64 = 0
      table.withUnsafeBytes { raw in
        for j in 0..<entries {
          let data = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j * 8, as: UInt64.self))
          if data == 0 || data == 1 { continue }  // unallocated, zero cluster
          allocated += 1
          if last != 0 && last + clusterSize != data { fragmented += 1 }
          last = data
          if !valid(data) {
            corrupt("qed.l2-entry", offset: l2 + UInt64(j) * 8,
                    "L2 table at \(hex(l2)) entry \(j) names a data cluster at \(hex(data)) outside the file or not cluster aligned")
            continue
          }
          _ = markUsed(data, clusters: 1, "a data cluster")
        }
      }
    }
    guard tracked else { return }
    // The header clusters are marked, so every clear bit below fileClusters is a leak.
    var usedCount = 0
    for word in used { usedCount += word.nonzeroBitCount }
    leaks = Int(fileClusters) - usedCount
    if leaks > 0 {
      findings.append(Finding("qed.leaked-clusters", .warning,
                              "\(leaks) cluster\(leaks == 1 ? " is" : "s are") in the file but referenced by no table: wasted space, no harm to data",
                              fix: "qemu-img check -r leaks -f qed"))
    }
  }
}
