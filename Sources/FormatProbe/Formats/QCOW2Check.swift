/// The qcow2 deep check: the `qemu-img check` consistency rules (QEMU block/qcow2-refcount.c)
/// re-implemented with bounded memory and linear time. See docs/formats.md, "qcow2".
extension QCOW2Probe: DeepCheckable {
  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    let image: QCOW2Image
    do {
      image = try QCOW2Image.open(ctx)
    } catch {
      var report = CheckReport()
      report.findings.append(Finding(corrupt: error))
      report.counts.set("check-errors", 1)
      return report
    }
    var checker = QCOW2Checker(ctx, image)
    checker.run()
    return checker.report()
  }
}

enum QCOW2CheckLimits {
  /// Host clusters whose refcounts are computed: 3 bytes each, so 16 Mi clusters is 48 MiB of
  /// memory and covers a 1 TiB file at the default 64 KiB clusters.
  static let maxClusters: UInt64 = 16 << 20
  /// L2 and bitmap table entries scanned in all: 2^28 entries is 2 GiB of tables, far beyond a
  /// real image, and stops snapshots that share tables from multiplying the work without bound.
  static let maxEntriesScanned: UInt64 = 1 << 28
  /// L2 tables remembered as scanned when the file is too large for per-cluster arrays (16 MiB).
  static let maxScannedSet = 1 << 20
  /// On-disk refcount look-ups for clusters past the end of the file (one cached block each).
  static let maxOutsideLookups = 4096
  /// Bytes per read of L1, refcount and bitmap tables.
  static let readPiece: UInt64 = 4 << 20
  /// Individual findings kept per id; the rest are summed up in one more finding.
  static let findingsPerId = 8
}

/// Who uses a host cluster, to name overlaps.
enum QCOW2Owner: UInt8 {
  case none = 0, header, l1, l2, refcountTable, refcountBlock, snapshotTable, snapshotL1, bitmapDirectory,
       bitmapTable, bitmapData, cryptoHeader, data, compressed

  var name: String {
    switch self {
    case .none: return "nothing"
    case .header: return "the header"
    case .l1: return "the active L1 table"
    case .l2: return "an L2 table"
    case .refcountTable: return "the refcount table"
    case .refcountBlock: return "a refcount block"
    case .snapshotTable: return "the snapshot table"
    case .snapshotL1: return "a snapshot L1 table"
    case .bitmapDirectory: return "the bitmap directory"
    case .bitmapTable: return "a bitmap table"
    case .bitmapData: return "bitmap data"
    case .cryptoHeader: return "the LUKS header"
    case .data: return "a data cluster"
    case .compressed: return "compressed data"
    }
  }

  /// L2 tables are shared between the active and snapshot L1 tables, data clusters between
  /// snapshots, and compressed clusters are packed several to a host cluster.
  var shareable: Bool { self == .l2 || self == .data || self == .compressed }
}

struct QCOW2Checker {
  let ctx: ProbeContext
  let image: QCOW2Image
  let h: QCOW2Header
  let clusterSize: UInt64
  let clusterBits: UInt64
  let fileSize: UInt64
  /// Host clusters in the file, plus one for areas that end inside the cluster after the end.
  let nClusters: Int
  /// Computed references per host cluster (saturating); empty when over the cluster limit.
  var refs: [UInt16] = []
  /// Per host cluster: owner (low 4 bits), referenced by the active tables with COPIED set
  /// (bit 4) or clear (bit 5), L2 table already scanned (bit 6).
  var meta: [UInt8] = []
  var refcountsComputed: Bool { !refs.isEmpty }
  var incomplete = false

  var corruptions = 0
  var leaks = 0
  var checkErrors = 0
  var allocated = 0
  var fragmented = 0
  var compressed = 0
  var imageEnd: UInt64 = 0
  var scanned: UInt64 = 0
  var l1EntriesRead: UInt64 = 0
  var scannedWithoutRefcounts = Set<UInt64>()
  var onDiskTable: [UInt64] = []
  var cachedBlock: [UInt8] = []
  var cachedBlockOffset: UInt64 = 0
  var outsideLookups = 0
  var nextContiguous: UInt64 = 0
  var overflows = 0

  var findings: [Finding] = []
  var perId: [String: Int] = [:]

  static let copiedSet: UInt8 = 1 << 4
  static let copiedClear: UInt8 = 1 << 5
  /// An L2 table already scanned (pass 2 of checkL1Tables).
  static let scannedBit: UInt8 = 1 << 6
  static let l1OffsetMask: UInt64 = 0x00ff_ffff_ffff_fe00
  static let l1Reserved: UInt64 = 0x7f00_0000_0000_01ff
  static let l2OffsetMask: UInt64 = 0x00ff_ffff_ffff_fe00
  static let copied: UInt64 = 1 << 63
  static let compressedFlag: UInt64 = 1 << 62
  static let refblockOffsetMask: UInt64 = 0xffff_ffff_ffff_fe00

  init(_ ctx: ProbeContext, _ image: QCOW2Image) {
    self.ctx = ctx
    self.image = image
    h = image.header
    clusterSize = image.header.clusterSize
    clusterBits = UInt64(image.header.clusterBits)
    fileSize = ctx.size
    let clusters = Checked.ceilDiv(ctx.size, clusterSize) + 1
    if clusters <= QCOW2CheckLimits.maxClusters {
      nClusters = Int(clusters)
      refs = [UInt16](repeating: 0, count: nClusters)
      meta = [UInt8](repeating: 0, count: nClusters)
    } else {
      nClusters = 0
    }
  }

  // MARK: findings

  mutating func add(_ id: String, _ severity: Severity, field: String? = nil, offset: UInt64? = nil, _ message: String) {
    let n = perId[id, default: 0]
    perId[id] = n + 1
    if n < QCOW2CheckLimits.findingsPerId {
      findings.append(Finding(id, severity, field: field, offset: offset, message))
    }
  }

  /// A corruption counted `times` times: QEMU counts a problem in a shared table once per reference.
  mutating func corrupt(_ id: String, field: String? = nil, offset: UInt64? = nil, times: Int = 1, _ message: String) {
    corruptions += times
    add(id, .corrupt, field: field, offset: offset, message)
  }

  mutating func readError(_ error: ImageError, _ what: String) {
    checkErrors += 1
    if error.kind == .needsSeekable {
      add("qcow2.check-error", .warning, field: what, offset: error.offset, "the deep check needs a seekable file: \(error.description)")
    } else if error.kind == .truncated {
      corrupt("qcow2.truncated", field: what, offset: error.offset, "\(what) is cut off: \(error.description)")
    } else {
      add("qcow2.check-error", .warning, field: what, offset: error.offset, "reading \(what) failed: \(error.description)")
    }
  }

  // MARK: reference counting

  /// Counts one reference to every host cluster of [offset, offset + size), as QEMU's
  /// inc_refcounts does. An area reaching one cluster or more past the end of the file is a
  /// corruption; one that ends inside the cluster after the end is accepted, as QEMU does.
  /// `table` and `index` say which table entry named the area (for messages only, rendered on
  /// error, so the hot loops build no strings). Returns false when the area is not inside the file.
  @discardableResult
  mutating func reference(_ offset: UInt64, _ size: UInt64, _ owner: QCOW2Owner, table: UInt64 = 0, index: Int = -1,
                          times: Int = 1) -> Bool {
    guard size > 0, times > 0 else { return true }
    let (end, overflow) = offset.addingReportingOverflow(size)
    if overflow || end > fileSize && end - fileSize >= clusterSize {
      corrupt("qcow2.truncated", field: owner.name, offset: offset, times: times,
              "\(owner.name) at \(hex(offset)) (\(size) bytes\(QCOW2Checker.site(table, index))) lies beyond the end of the file (\(fileSize) bytes)")
      return false
    }
    guard refcountsComputed else { return true }
    let first = Int(offset >> clusterBits)
    let last = Int((end - 1) >> clusterBits)
    for k in first...last where k < nClusters {
      let sum = Int(refs[k]) + times
      if sum > Int(UInt16.max) {
        overflows += 1
        if overflows == 1 {
          add("qcow2.refcount-overflow", .corrupt, offset: UInt64(k) << clusterBits,
              "cluster \(k) is referenced more than 65535 times")
        }
        refs[k] = UInt16.max
      } else {
        refs[k] = UInt16(sum)
      }
      let previous = QCOW2Owner(rawValue: meta[k] & 0x0f) ?? .none
      if previous == .none {
        meta[k] = (meta[k] & 0xf0) | owner.rawValue
      } else if previous != owner || !owner.shareable {
        add("qcow2.metadata-overlap", .corrupt, field: owner.name, offset: UInt64(k) << clusterBits,
            "host cluster \(k) (\(hex(UInt64(k) << clusterBits))) is used by both \(previous.name) and \(owner.name)\(QCOW2Checker.site(table, index))")
      }
    }
    return true
  }

  static func site(_ table: UInt64, _ index: Int) -> String {
    index < 0 ? "" : ", named by entry \(index) of the table at \(hex(table))"
  }

  /// Marks the COPIED flag an active table entry gives a cluster (checked against its refcount).
  mutating func noteCopied(_ offset: UInt64, _ copied: Bool) {
    guard refcountsComputed else { return }
    let k = Int(offset >> clusterBits)
    guard k < nClusters else { return }
    meta[k] |= copied ? QCOW2Checker.copiedSet : QCOW2Checker.copiedClear
  }

  /// A cluster one or more clusters past the end of the file is outside the computed arrays, so
  /// its COPIED flag is checked here against its on-disk refcount, as QEMU's check_oflag_copied does.
  mutating func copiedOutside(_ inFile: Bool, _ entry: UInt64, _ host: UInt64, label: String, index: Int, times: Int = 1) {
    guard !inFile else { return }
    let stored = onDiskRefcount(host >> clusterBits)
    guard (stored == 1) != (entry & QCOW2Checker.copied != 0) else { return }
    corrupt("qcow2.copied-flag", field: label, offset: host, times: times,
            "\(label) entry \(index) names \(hex(host)), beyond the end of the file, with the COPIED flag \(entry & QCOW2Checker.copied != 0 ? "set" : "clear") but refcount \(stored)")
  }

  // MARK: the check

  mutating func run() {
    if !refcountsComputed {
      add("qcow2.check-limit", .warning,
          "the file has more than \(QCOW2CheckLimits.maxClusters) host clusters; table entries are bounds-checked but refcounts are not compared")
    }
    // The on-disk refcounts are needed early for COPIED flags on clusters past the end of the file.
    // A table a cluster or more past the end is reported once, by reference() below.
    let (rtEnd, rtOverflow) = h.refcountTableOffset.addingReportingOverflow(h.refcountTableBytes)
    let rtOutside = rtOverflow || rtEnd > fileSize && rtEnd - fileSize >= clusterSize
    let refcountTable = rtOutside ? nil : readTable(h.refcountTableOffset, entries: h.refcountTableBytes / 8, "refcount table")
    onDiskTable = refcountTable ?? []
    reference(0, clusterSize, .header)
    checkL1Tables()
    reference(h.snapshotsOffset, image.snapshotTableBytes, .snapshotTable)
    reference(h.refcountTableOffset, h.refcountTableBytes, .refcountTable)
    if let c = image.cryptoHeader, h.cryptMethod == 2 {
      reference(c.offset, c.length, .cryptoHeader)
      // The LUKS key material lives inside the header area the extension declares.
      if let luks = image.luks {
        for var f in LUKSProbe.checkKeySlots(luks, fileSize: c.length) {
          f.id = "qcow2.crypto-header"
          f.offset = f.offset.map { $0 + c.offset }
          corruptions += 1
          findings.append(f)
        }
      }
    }
    checkBitmaps()
    if let refcountTable {
      checkRefcountBlocks(refcountTable)
      if refcountsComputed, !incomplete { compareRefcounts(refcountTable) }
    } else {
      incomplete = true  // no on-disk refcounts to compare: leave leaks and the end offset out
    }
  }

  /// Reads a table of big-endian u64 entries in pieces; nil (and a finding) when unreadable.
  mutating func readTable(_ offset: UInt64, entries: UInt64, _ what: String) -> [UInt64]? {
    let bytes = entries * 8
    if offset > fileSize || bytes > fileSize - offset {
      corrupt("qcow2.truncated", field: what, offset: offset,
              "\(what) at \(hex(offset)) (\(bytes) bytes) ends beyond the end of the file (\(fileSize) bytes)")
      return nil
    }
    var out = [UInt64]()
    out.reserveCapacity(Int(entries))
    var done: UInt64 = 0
    while done < bytes {
      let n = Int(min(QCOW2CheckLimits.readPiece, bytes - done))
      do {
        let b = try ctx.source.readExactly(at: offset + done, count: n, format: "qcow2", field: what)
        b.withUnsafeBytes { raw in
          var i = 0
          while i + 8 <= n {
            out.append(UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
            i += 8
          }
        }
      } catch {
        readError(error, what)
        return nil
      }
      done += UInt64(n)
    }
    return out
  }

  /// One L1 table to check: snapshots sharing an L1 table are one entry with `times` > 1.
  struct L1Table {
    var offset: UInt64
    var entries: UInt64
    var times: Int
    var active: Bool
    var label: String
  }

  /// The L1 tables and the L2 tables they name (QEMU check_refcounts_l1), in two passes so that
  /// shared tables cost one scan however often they are named: pass 1 counts the references to
  /// every L2 table (its computed refcount), pass 2 scans each distinct L2 table once and credits
  /// its entries that many times, which is what QEMU's repeated scans add up to.
  mutating func checkL1Tables() {
    var tables = [L1Table(offset: h.l1TableOffset, entries: UInt64(h.l1Size), times: 1, active: true, label: "active L1 table")]
    var groups: [(offset: UInt64, entries: UInt64, first: Int, count: Int)] = []
    let sorted = image.snapshots.enumerated().sorted { ($0.1.l1TableOffset, $0.1.l1Size, $0.0) < ($1.1.l1TableOffset, $1.1.l1Size, $1.0) }
    for (i, sn) in sorted {
      if let last = groups.last, last.offset == sn.l1TableOffset, last.entries == UInt64(sn.l1Size) {
        groups[groups.count - 1].count += 1
      } else {
        groups.append((sn.l1TableOffset, UInt64(sn.l1Size), i, 1))
      }
    }
    for g in groups.sorted(by: { $0.first < $1.first }) {
      let name = image.snapshots[g.first].name
      tables.append(L1Table(offset: g.offset, entries: g.entries, times: g.count, active: false,
                            label: g.count > 1 ? "L1 table of snapshot \(g.first) ('\(name)') and \(g.count - 1) more" : "L1 table of snapshot \(g.first) ('\(name)')"))
    }
    var readable: [Bool] = []
    for t in tables { readable.append(countL1(t)) }
    for (t, ok) in zip(tables, readable) where ok {
      scanL1(t)
      if incomplete { return }
    }
  }

  /// Pass 1 for one L1 table: its own clusters, entry checks, and one reference per entry to the
  /// L2 table it names. Returns whether pass 2 should read it.
  mutating func countL1(_ t: L1Table) -> Bool {
    guard t.entries > 0 else { return false }
    reference(t.offset, t.entries * 8, t.active ? .l1 : .snapshotL1, times: t.times)
    guard t.entries <= QCOW2Limits.maxL1Bytes / 8 else {
      corrupt("qcow2.l1-entry", field: t.label, offset: t.offset, times: t.times,
              "\(t.label) has \(t.entries) entries, more than the 32 MiB limit")
      return false
    }
    guard l1EntriesRead + t.entries <= QCOW2CheckLimits.maxEntriesScanned else {
      incomplete = true
      add("qcow2.check-limit", .warning, "the L1 tables hold more than \(QCOW2CheckLimits.maxEntriesScanned) entries in all; refcounts were not compared")
      return false
    }
    l1EntriesRead += t.entries
    guard let l1 = readTable(t.offset, entries: t.entries, t.label) else { return false }
    // An L2 table named twice by one L1 table is never valid (QEMU counts it through refcounts).
    var l2s = l1.map { $0 & QCOW2Checker.l1OffsetMask }.filter { $0 != 0 }
    l2s.sort()
    var duplicate: UInt64? = nil
    if l2s.count > 1 {
      for i in 1..<l2s.count where l2s[i] == l2s[i - 1] { duplicate = l2s[i]; break }
    }
    if let duplicate {
      add("qcow2.l1-entry", .corrupt, field: t.label, offset: t.offset,
          "\(t.label) names the L2 table at \(hex(duplicate)) more than once")
    }
    for (i, e) in l1.enumerated() {
      let l2 = e & QCOW2Checker.l1OffsetMask
      let entryOffset = t.offset + UInt64(i) * 8
      if e & QCOW2Checker.l1Reserved != 0 {
        corrupt("qcow2.l1-entry", field: t.label, offset: entryOffset, times: t.times,
                "\(t.label) entry \(i) (\(hex(e))) has reserved bits set")
      }
      guard l2 != 0 else { continue }
      let inFile = reference(l2, clusterSize, .l2, table: t.offset, index: i, times: t.times)
      if l2 & (clusterSize - 1) != 0 {
        corrupt("qcow2.l1-entry", field: t.label, offset: entryOffset, times: t.times,
                "\(t.label) entry \(i) names an L2 table at \(hex(l2)), not cluster aligned")
        continue
      }
      if t.active {
        noteCopied(l2, e & QCOW2Checker.copied != 0)
        copiedOutside(inFile, e, l2, label: t.label, index: i)
      }
      if inFile, l2 + clusterSize > fileSize {
        corrupt("qcow2.truncated", field: t.label, offset: entryOffset, times: t.times,
                "the L2 table at \(hex(l2)) of \(t.label) entry \(i) is cut off by the end of the file")
      }
    }
    return true
  }

  /// Pass 2 for one L1 table: scans each L2 table it names that no earlier table scanned.
  mutating func scanL1(_ t: L1Table) {
    guard let l1 = readTable(t.offset, entries: t.entries, t.label) else { return }
    // How often the active table names each L2 table (QEMU scans, and counts statistics, per entry).
    // Sorted offsets, counted by binary search: no per-entry dictionary for a 4 Mi-entry table.
    var sortedL2: [UInt64] = []
    if t.active {
      sortedL2 = l1.map { $0 & QCOW2Checker.l1OffsetMask }
      sortedL2.sort()
    }
    func activeCount(_ l2: UInt64) -> Int {
      var lo = 0, hi = sortedL2.count
      while lo < hi { let mid = (lo + hi) / 2; if sortedL2[mid] < l2 { lo = mid + 1 } else { hi = mid } }
      var n = 0
      while lo + n < sortedL2.count, sortedL2[lo + n] == l2 { n += 1 }
      return max(n, 1)
    }
    for e in l1 {
      let l2 = e & QCOW2Checker.l1OffsetMask
      guard l2 != 0, l2 & (clusterSize - 1) == 0, l2 <= fileSize, clusterSize <= fileSize - l2 else { continue }
      var times = t.times
      if refcountsComputed {
        let k = Int(l2 >> clusterBits)
        if meta[k] & QCOW2Checker.scannedBit != 0 { continue }
        meta[k] |= QCOW2Checker.scannedBit
        times = max(1, Int(refs[k]))
      } else if scannedWithoutRefcounts.count < QCOW2CheckLimits.maxScannedSet {
        // No per-cluster arrays: a bounded set keeps a crafted L1 from rescanning one table.
        if !scannedWithoutRefcounts.insert(l2).inserted { continue }
      }
      checkL2(l2, times: times, activeTimes: t.active ? (refcountsComputed ? activeCount(l2) : 1) : 0,
              label: "L2 table at \(hex(l2))")
      if incomplete { return }
    }
  }

  /// One L2 table (QEMU check_refcounts_l2).
  /// `times`: references to this table in all L1 tables; `activeTimes`: from the active one.
  mutating func checkL2(_ offset: UInt64, times: Int, activeTimes: Int, label: String) {
    let active = activeTimes > 0
    let entrySize = Int(h.l2EntrySize)
    let count = Int(h.l2Entries)
    guard scanned + UInt64(count) <= QCOW2CheckLimits.maxEntriesScanned else {
      incomplete = true
      add("qcow2.check-limit", .warning,
          "the tables name more than \(QCOW2CheckLimits.maxEntriesScanned) entries in all; the rest were not checked and refcounts were not compared")
      return
    }
    scanned += UInt64(count)
    // QEMU measures fragmentation within each L2 table (check_refcounts_l2's local offset).
    nextContiguous = 0
    let table: [UInt8]
    do {
      table = try ctx.source.readExactly(at: offset, count: Int(clusterSize), format: "qcow2", field: label)
    } catch {
      readError(error, label)
      return
    }
    let extended = h.extendedL2
    let dataFile = h.hasDataFile
    // Compressed descriptor: host offset in bits 0..x-1, additional 512-byte sectors above (spec).
    let x = 62 - (clusterBits - 8)
    let compressedOffsetMask: UInt64 = (1 << x) - 1
    let sectorMask: UInt64 = (1 << (clusterBits - 8)) - 1
    let reservedMask: UInt64 = extended ? 0x3f00_0000_0000_01ff : 0x3f00_0000_0000_01fe
    table.withUnsafeBytes { raw in
      for i in 0..<count {
        let e = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: i * entrySize, as: UInt64.self))
        let bitmap = extended ? UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: i * entrySize + 8, as: UInt64.self)) : 0
        if e == 0 && bitmap == 0 { continue }
        let entryOffset = offset + UInt64(i * entrySize)
        if e & QCOW2Checker.compressedFlag != 0 {
          if e & QCOW2Checker.copied != 0 {
            corrupt("qcow2.compressed-entry", field: label, offset: entryOffset, times: times,
                    "\(label) entry \(i) is compressed with the COPIED flag set, which is never valid")
          }
          if dataFile {
            corrupt("qcow2.compressed-entry", field: label, offset: entryOffset, times: times,
                    "\(label) entry \(i) is compressed in an image with an external data file")
            continue
          }
          if bitmap != 0 {
            corrupt("qcow2.subcluster-bitmap", field: label, offset: entryOffset + 8, times: times,
                    "\(label) entry \(i) is compressed but has a non-zero subcluster bitmap")
            continue
          }
          let hostOffset = e & compressedOffsetMask
          let sectors = ((e >> x) & sectorMask) + 1
          let size = sectors * 512 - (hostOffset & 511)
          reference(hostOffset, size, .compressed, table: offset, index: i, times: times)
          if active {
            allocated += activeTimes
            compressed += activeTimes
            fragmented += activeTimes
          }
          continue
        }
        if e & reservedMask != 0 {
          corrupt("qcow2.l2-entry", field: label, offset: entryOffset, times: times,
                  "\(label) entry \(i) (\(hex(e))) has reserved bits set")
        }
        let host = e & QCOW2Checker.l2OffsetMask
        // host 0 with the zero flag is a plain zero cluster; without it, unallocated.
        if host == 0 && !(dataFile && h.autoclearFeatures & QCOW2Feature.autoclearRawData != 0) {
          if extended, bitmap & 0xffff_ffff != 0 {
            corrupt("qcow2.subcluster-bitmap", field: label, offset: entryOffset + 8, times: times,
                    "\(label) entry \(i) is unallocated but its bitmap marks subclusters allocated")
          }
          continue
        }
        if extended, (bitmap >> 32) & bitmap & 0xffff_ffff != 0 {
          corrupt("qcow2.subcluster-bitmap", field: label, offset: entryOffset + 8, times: times,
                  "\(label) entry \(i) marks subclusters both allocated and zero (\(hex(bitmap)))")
        }
        if host & (clusterSize - 1) != 0 {
          corrupt("qcow2.l2-entry", field: label, offset: entryOffset, times: times,
                  "\(label) entry \(i) names a data cluster at \(hex(host)), not cluster aligned")
          continue
        }
        if active {
          allocated += activeTimes
          if nextContiguous != 0 && host != nextContiguous { fragmented += activeTimes }
          nextContiguous = host + clusterSize
        }
        if dataFile {
          if active, e & QCOW2Checker.copied == 0 {
            corrupt("qcow2.copied-flag", field: label, offset: entryOffset, times: activeTimes,
                    "\(label) entry \(i) lacks the COPIED flag, which external data file clusters always have")
          }
        } else {
          let inFile = reference(host, clusterSize, .data, table: offset, index: i, times: times)
          if active { copiedOutside(inFile, e, host, label: label, index: i, times: activeTimes) }
          if active { noteCopied(host, e & QCOW2Checker.copied != 0) }
        }
      }
    }
  }

  /// The on-disk refcount of one cluster, for the few clusters outside the computed arrays
  /// (COPIED flags naming clusters past the end of the file). The last block read is cached and
  /// at most `maxOutsideLookups` clusters are looked up; beyond that, 0 is assumed.
  mutating func onDiskRefcount(_ cluster: UInt64) -> UInt64 {
    outsideLookups += 1
    guard outsideLookups <= QCOW2CheckLimits.maxOutsideLookups else { return 0 }
    let perBlock = (clusterSize * 8) / h.refcountBits
    let block = cluster / perBlock
    guard block < UInt64(onDiskTable.count) else { return 0 }
    let off = onDiskTable[Int(block)] & QCOW2Checker.refblockOffsetMask
    guard off != 0, off & (clusterSize - 1) == 0, off < fileSize else { return 0 }
    if cachedBlockOffset != off {
      guard let b = try? ctx.source.read(at: off, count: Int(clusterSize)), b.count == Int(clusterSize) else { return 0 }
      cachedBlock = b
      cachedBlockOffset = off
    }
    return QCOW2Checker.refcount(cachedBlock, index: Int(cluster % perBlock), bits: h.refcountBits)
  }

  /// Persistent bitmaps: directory, tables and the clusters they name (QEMU qcow2_check_bitmaps_refcounts).
  mutating func checkBitmaps() {
    guard let ext = image.bitmapsExtension, h.autoclearFeatures & QCOW2Feature.autoclearBitmaps != 0, ext.count > 0 else { return }
    reference(ext.directoryOffset, ext.directorySize, .bitmapDirectory)
    for bm in image.bitmaps {
      let what = "bitmap '\(bm.name)' table"
      guard bm.tableSize > 0, bm.tableSize <= QCOW2Limits.maxBitmapTableEntries else { continue }
      if bm.tableOffset & (clusterSize - 1) != 0 {
        corrupt("qcow2.bitmap-table", field: what, offset: bm.entryOffset,
                "\(what) at \(hex(bm.tableOffset)) is not cluster aligned")
        continue
      }
      let entries = UInt64(bm.tableSize)
      guard reference(bm.tableOffset, entries * 8, .bitmapTable, table: ext.directoryOffset, index: 0) else { continue }
      guard scanned + entries <= QCOW2CheckLimits.maxEntriesScanned else {
        incomplete = true
        add("qcow2.check-limit", .warning, "bitmap tables exceed the deep check's work bound; refcounts were not compared")
        return
      }
      scanned += entries
      // Read in pieces: a bitmap table may be far larger than any other table.
      let piece = QCOW2CheckLimits.readPiece / 8
      var first: UInt64 = 0
      while first < entries {
        let n = min(piece, entries - first)
        guard let table = readTable(bm.tableOffset + first * 8, entries: n, what) else { break }
        for (j, e) in table.enumerated() {
          let i = Int(first) + j
          let off = e & QCOW2Checker.l2OffsetMask
          if e & 0xff00_0000_0000_01fe != 0 {
            corrupt("qcow2.bitmap-table", field: what, offset: bm.tableOffset + UInt64(i) * 8,
                    "\(what) entry \(i) (\(hex(e))) has reserved bits set")
          }
          guard off != 0 else { continue }
          if off & (clusterSize - 1) != 0 {
            corrupt("qcow2.bitmap-table", field: what, offset: bm.tableOffset + UInt64(i) * 8,
                    "\(what) entry \(i) names data at \(hex(off)), not cluster aligned")
            continue
          }
          reference(off, clusterSize, .bitmapData, table: bm.tableOffset, index: i)
        }
        first += n
      }
    }
  }

  /// Refcount table entries and the blocks they name (QEMU check_refblocks).
  mutating func checkRefcountBlocks(_ table: [UInt64]) {
    let fileClusters = Checked.ceilDiv(fileSize, clusterSize)
    for (i, e) in table.enumerated() {
      let off = e & QCOW2Checker.refblockOffsetMask
      let entryOffset = h.refcountTableOffset + UInt64(i) * 8
      if e & 0x1ff != 0 {
        corrupt("qcow2.refcount-block", field: "refcount table", offset: entryOffset,
                "refcount table entry \(i) (\(hex(e))) has reserved bits set")
      }
      guard off != 0 else { continue }
      if off & (clusterSize - 1) != 0 {
        corrupt("qcow2.refcount-block", field: "refcount table", offset: entryOffset,
                "refcount block \(i) at \(hex(off)) is not cluster aligned")
        continue
      }
      if off >> clusterBits >= fileClusters {
        corrupt("qcow2.refcount-block", field: "refcount table", offset: entryOffset,
                "refcount block \(i) at \(hex(off)) lies beyond the end of the file (\(fileSize) bytes)")
        continue
      }
      reference(off, clusterSize, .refcountBlock, table: h.refcountTableOffset, index: i)
      if refcountsComputed {
        let k = Int(off >> clusterBits)
        if refs[k] != 1 {
          corrupt("qcow2.refcount-block", field: "refcount table", offset: entryOffset,
                  "refcount block \(i) at \(hex(off)) is referenced \(refs[k]) times; it must be used once")
        }
      }
      if off + clusterSize > fileSize {
        corrupt("qcow2.truncated", field: "refcount table", offset: entryOffset,
                "refcount block \(i) at \(hex(off)) is cut off by the end of the file")
      }
    }
  }

  /// Compares on-disk refcounts with the computed ones (QEMU compare_refcounts) and checks the
  /// COPIED flags of the active tables (QEMU check_oflag_copied).
  mutating func compareRefcounts(_ table: [UInt64]) {
    let bits = h.refcountBits
    let perBlock = Int((clusterSize * 8) / bits)
    var highest = -1
    var leakedFirst: [Int] = []
    var k = 0
    var block = 0
    // QEMU compares the clusters of the file, and the one after it only when something refers to it.
    let fileClusters = Int(Checked.ceilDiv(fileSize, clusterSize))
    let compared = nClusters > fileClusters && refs[fileClusters] > 0 ? nClusters : min(nClusters, fileClusters)
    while k < compared {
      let upto = min(compared, k + perBlock)
      var onDisk: [UInt8]? = nil
      if block < table.count {
        let e = table[block]
        let off = e & QCOW2Checker.refblockOffsetMask
        if off != 0, off & (clusterSize - 1) == 0, off < fileSize {
          do {
            let b = try ctx.source.read(at: off, count: Int(clusterSize))
            onDisk = b.count == Int(clusterSize) ? b : b + [UInt8](repeating: 0, count: Int(clusterSize) - b.count)
          } catch {
            readError(error, "refcount block \(block)")
            // Unknown on-disk values: skip these clusters rather than guess.
            k = upto
            block += 1
            continue
          }
        }
      }
      for c in k..<upto {
        let stored = onDisk.map { QCOW2Checker.refcount($0, index: c - k, bits: bits) } ?? 0
        let computed = UInt64(refs[c])
        if stored > 0 || computed > 0 { highest = c }
        if stored < computed {
          corrupt("qcow2.refcount-mismatch", offset: UInt64(c) << clusterBits,
                  "cluster \(c) (\(hex(UInt64(c) << clusterBits))) has refcount \(stored) but \(computed) references")
        } else if stored > computed {
          leaks += 1
          if leakedFirst.count < 8 { leakedFirst.append(c) }
        }
        let m = meta[c]
        if m & QCOW2Checker.copiedSet != 0, stored != 1 {
          corrupt("qcow2.copied-flag", offset: UInt64(c) << clusterBits,
                  "cluster \(c) has the COPIED flag but refcount \(stored); COPIED means exactly 1")
        } else if m & QCOW2Checker.copiedClear != 0, stored == 1, m & QCOW2Checker.copiedSet == 0 {
          corrupt("qcow2.copied-flag", offset: UInt64(c) << clusterBits,
                  "cluster \(c) has refcount 1 but its active table entry lacks the COPIED flag")
        }
      }
      k = upto
      block += 1
    }
    if leaks > 0 {
      let list = leakedFirst.map(String.init).joined(separator: ", ")
      findings.append(Finding("qcow2.leaked-clusters", .warning, field: "refcount table", offset: h.refcountTableOffset,
                              "\(leaks) cluster\(leaks == 1 ? " has a refcount" : "s have refcounts") higher than \(leaks == 1 ? "its" : "their") references (first: \(list)): wasted space, no harm to data",
                              fix: "qemu-img check -r leaks"))
    }
    imageEnd = UInt64(highest + 1) << clusterBits
  }

  /// Entry `index` of a refcount block of `bits`-bit entries: sub-byte widths are packed least
  /// significant first within each byte, wider ones are big-endian (spec, "Host cluster management").
  @inline(__always)
  static func refcount(_ block: [UInt8], index: Int, bits: UInt64) -> UInt64 {
    switch bits {
    case 1, 2, 4:
      let b = Int(bits)
      let byte = block[(index * b) / 8]
      return UInt64((byte >> UInt8((index * b) % 8)) & UInt8((1 << b) - 1))
    case 8:
      return UInt64(block[index])
    default:
      let n = Int(bits / 8)
      var v: UInt64 = 0
      for i in 0..<n { v = v << 8 | UInt64(block[index * n + i]) }
      return v
    }
  }

  func report() -> CheckReport {
    var r = CheckReport()
    r.findings = findings
    for (id, n) in perId.sorted(by: { $0.key < $1.key }) where n > QCOW2CheckLimits.findingsPerId && id != "qcow2.leaked-clusters" {
      let severity = findings.first { $0.id == id }?.severity ?? .corrupt
      r.findings.append(Finding(id, severity, "\(n - QCOW2CheckLimits.findingsPerId) more \(id) problems not listed (\(n) in all)"))
    }
    var c = JSONObject()
    if refcountsComputed, !incomplete { c.set("image-end-offset", imageEnd) }
    c.set("total-clusters", Checked.ceilDiv(h.size, clusterSize))
    c.set("check-errors", checkErrors)
    if refcountsComputed, !incomplete { c.set("leaks", leaks) }
    c.set("corruptions", corruptions)
    c.set("allocated-clusters", allocated)
    c.set("fragmented-clusters", fragmented)
    c.set("compressed-clusters", compressed)
    r.counts = c
    return r
  }
}
