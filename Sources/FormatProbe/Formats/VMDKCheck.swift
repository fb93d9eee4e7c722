import Glibc

/// `imgtool check` for VMDK sparse extents: the grain directory, redundant grain directory, every
/// grain table and grain pointer, and (streamOptimized) the marker stream, in the spirit of
/// `qemu-img check` but stricter (qemu only checks that grains lie inside the file).
///
/// Memory is bounded: directories are read in pieces of `CheckLimits.piece` bytes, one grain
/// table at a time; the overlap bitmaps are sized from counts checked against the file size and
/// capped (`CheckLimits`). Time is linear in the metadata the file holds.
extension VMDKProbe: DeepCheckable {
  public enum CheckLimits {
    /// Directory bytes read per piece.
    public static let piece = 4 << 20
    /// Grain tables whose positions are kept for the grain-versus-metadata overlap check
    /// (4 MiB of offsets; a 64 KiB-grain disk of 32 TiB has 1 Mi tables). Beyond it the overlap
    /// check covers the fixed metadata only.
    public static let maxTrackedGTs = 1 << 20
    /// Bits of the grain-overlap bitmap (32 MiB): enough for any file below 128 GiB at sector
    /// granularity, or 16 TiB at 64 KiB grain granularity.
    public static let maxBitmapBits: UInt64 = 1 << 28
    /// Compressed grains are inflated (to check they expand to exactly one grain, as qemu
    /// requires) up to this much output in total: about 3 s of zlib; the rest are counted.
    public static let maxInflatedBytes: UInt64 = 1 << 30
    /// Grains larger than this (qemu's default is 64 KiB) are not inflated: the buffer is one grain.
    public static let maxInflateGrain: UInt64 = 16 << 20
    /// Deflate's worst case grows 64 KiB by ~0.03% plus a few bytes; allow 1/16 plus 1 KiB.
    static func maxCompressed(_ grainBytes: UInt64) -> UInt64 { grainBytes + grainBytes / 16 + 1024 }
  }

  /// What the walker needs, in sectors, for KDMV and COWD extents alike.
  struct Layout {
    var capacity: UInt64
    var grainSize: UInt64
    var gtEntries: UInt64
    var gdEntries: UInt64
    var gd: UInt64
    var rgd: UInt64?
    var markers: Bool
    var zeroedGrains: Bool
    var overHead: UInt64
    /// Header, descriptor, footer: (first sector, end sector, name).
    var fixed: [(UInt64, UInt64, String)]
  }

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var report = CheckReport()
    let layout: Layout
    do throws(ImageError) {
      let head = ctx.headReader(format)
      if head.matches(magicKDMV, at: 0) {
        var ignored: [Finding] = []
        let s = try readSparse(ctx, findings: &ignored)
        let h = s.header
        var fixed: [(UInt64, UInt64, String)] = [(0, 1, "header")]
        // Only a descriptor inside the file can collide with tables (the probe refuses others).
        let fileSectors = Checked.ceilDiv(ctx.size, 512)
        if h.descriptorOffset > 0, h.descriptorOffset < fileSectors {
          let size = min(max(h.descriptorSize, 1), fileSectors - h.descriptorOffset)
          fixed.append((h.descriptorOffset, h.descriptorOffset + size, "descriptor"))
        }
        if s.footer != nil {
          let end = ctx.size / 512
          fixed.append((end - 3, end, "footer"))
        }
        layout = Layout(capacity: h.capacity, grainSize: h.grainSize, gtEntries: UInt64(h.numGTEsPerGT),
                        gdEntries: s.gdEntries, gd: h.gdOffset, rgd: h.usesRedundantGD ? h.rgdOffset : nil,
                        markers: h.hasMarkers, zeroedGrains: h.zeroedGrains, overHead: h.overHead, fixed: fixed)
      } else if head.matches(magicCOWD, at: 0) {
        let c = try COWDHeader.decode(try ctx.reader(at: 0, count: 32, format, "COWD header"))
        guard Checked.isPowerOfTwo(UInt64(c.grainSize)), UInt64(c.grainSize) <= Limits.maxGrainSectors else {
          throw ImageError(.invalidField, format: format, field: "grainSize", offset: 16, "is \(c.grainSize)",
                           finding: "vmdk.grain-size")
        }
        guard UInt64(c.numGDEntries) <= Limits.maxGDEntries else {
          throw ImageError(.limitExceeded, format: format, field: "numGDEntries", offset: 24, "is \(c.numGDEntries)",
                           finding: "vmdk.gd-size")
        }
        layout = Layout(capacity: UInt64(c.numSectors), grainSize: UInt64(c.grainSize), gtEntries: COWDHeader.gtEntries,
                        gdEntries: UInt64(c.numGDEntries), gd: UInt64(c.gdOffset), rgd: nil, markers: false,
                        zeroedGrains: false, overHead: 4, fixed: [(0, 4, "header")])
      } else {
        // A descriptor file: its extents are other files, never opened; nothing more to walk.
        report.counts.set("check-errors", 0)
        return report
      }
    } catch {
      report.findings.append(Finding(corrupt: error))
      report.counts.set("check-errors", 1)
      return report
    }
    var w = GrainWalker(ctx: ctx, l: layout)
    w.run()
    if layout.markers { w.walkStream() }
    w.finish(into: &report)
    return report
  }

  struct GrainWalker {
    let ctx: ProbeContext
    let l: Layout
    let fileSectors: UInt64
    let gtSectors: UInt64
    let gdSectors: UInt64
    var findings: [Finding] = []
    var emitted: [String: Int] = [:]
    var suppressed: [String: Int] = [:]
    var checkErrors: UInt64 = 0
    var corruptions: UInt64 = 0
    var leaks: UInt64 = 0
    var allocated: UInt64 = 0
    var zero: UInt64 = 0
    var rgdMismatches: UInt64 = 0
    var streamGrains: UInt64 = 0
    var inflated: UInt64 = 0
    var notInflated: UInt64 = 0
    var inflateBuffer: [UInt8] = []
    /// Metadata ranges, sorted by start, for the grain overlap check.
    var meta: [(UInt64, UInt64, String)] = []
    var bitmap: [UInt64] = []
    var bitmapBits: UInt64 = 0
    /// Bitmap granularity: a grain slot (uncompressed) or a sector (compressed grains are packed).
    var bitmapUnit: UInt64 = 1

    init(ctx: ProbeContext, l: Layout) {
      self.ctx = ctx
      self.l = l
      fileSectors = Checked.ceilDiv(ctx.size, 512)
      gtSectors = Checked.ceilDiv(l.gtEntries * 4, 512)
      gdSectors = Checked.ceilDiv(l.gdEntries * 4, 512)
      bitmapUnit = l.markers ? 1 : l.grainSize
      let slots = fileSectors / bitmapUnit + 1
      if slots <= CheckLimits.maxBitmapBits {
        bitmapBits = slots
        bitmap = [UInt64](repeating: 0, count: Int((slots + 63) / 64))
      }
    }

    mutating func add(_ id: String, _ severity: Severity, field: String, offset: UInt64?, _ message: String) {
      if severity == .corrupt { corruptions += 1 }
      let n = emitted[id, default: 0]
      guard n < VMDKProbe.Limits.maxFindingsPerKind else {
        suppressed[id, default: 0] += 1
        return
      }
      emitted[id] = n + 1
      findings.append(Finding(id, severity, field: field, offset: offset, message))
    }

    /// Reads `count` u32 entries at `sector` in pieces, calling `body(index, value)`.
    mutating func entries(at sector: UInt64, count: UInt64, field: String, _ body: (inout GrainWalker, UInt64, UInt32) -> Void)
      -> Bool
    {
      var i: UInt64 = 0
      let per = UInt64(CheckLimits.piece / 4)
      while i < count {
        let n = min(per, count - i)
        let bytes: [UInt8]
        do {
          bytes = try ctx.source.readExactly(at: sector * 512 + i * 4, count: Int(n * 4), format: "vmdk", field: field)
        } catch {
          findings.append(Finding(corrupt: error))
          checkErrors += 1
          return false
        }
        var values = [UInt32](repeating: 0, count: Int(n))
        bytes.withUnsafeBytes { raw in
          for k in 0..<Int(n) { values[k] = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: k * 4, as: UInt32.self)) }
        }
        for (k, v) in values.enumerated() { body(&self, i + UInt64(k), v) }
        i += n
      }
      return true
    }

    func inFile(_ start: UInt64, _ sectors: UInt64) -> Bool { start <= fileSectors && sectors <= fileSectors - start }

    mutating func run() {
      guard l.gdEntries > 0 else { return }
      // The directories themselves.
      guard l.gd > 0, inFile(l.gd, gdSectors) else {
        add("vmdk.gd-out-of-range", .corrupt, field: "gdOffset", offset: nil,
            "the grain directory (\(l.gdEntries) entries at sector \(l.gd)) lies outside the file (\(fileSectors) sectors)")
        return
      }
      var rgd = l.rgd
      if let r = rgd, r == 0 || !inFile(r, gdSectors) {
        add("vmdk.gd-out-of-range", .corrupt, field: "rgdOffset", offset: nil,
            "the redundant grain directory (at sector \(r)) lies outside the file (\(fileSectors) sectors)")
        rgd = nil
      }
      meta = l.fixed
      meta.append((l.gd, l.gd + gdSectors, "grain directory"))
      if let r = rgd { meta.append((r, r + gdSectors, "redundant grain directory")) }

      // Pass 1: grain table positions (both directories), kept when few enough.
      var primary: [UInt32] = []
      var redundant: [UInt32] = []
      let keep = l.gdEntries <= UInt64(CheckLimits.maxTrackedGTs)
      for (which, dirSector) in [("grain directory", l.gd), ("redundant grain directory", rgd)] {
        guard let dirSector else { continue }
        let isPrimary = dirSector == l.gd && which == "grain directory"
        let ok = entries(at: dirSector, count: l.gdEntries, field: which) { w, i, gt in
          if keep { if isPrimary { primary.append(gt) } else { redundant.append(gt) } }
          guard gt != 0 else { return }
          if !w.inFile(UInt64(gt), w.gtSectors) {
            w.add("vmdk.gt-out-of-range", .corrupt, field: which, offset: dirSector * 512 + i * 4,
                  "\(which) entry \(i) points at a grain table at sector \(gt), beyond the end of the file (\(w.fileSectors) sectors)")
          } else if keep {
            w.meta.append((UInt64(gt), UInt64(gt) + w.gtSectors, "grain table \(i)"))
          }
        }
        if !ok { return }
      }
      if keep { checkMetadataOverlaps() }

      // Pass 2: every grain table of the primary directory (and its redundant twin).
      if keep {
        tables(primary, redundant: rgd == nil ? nil : redundant)
      } else {
        meta.sort { $0.0 < $1.0 }
        _ = entries(at: l.gd, count: l.gdEntries, field: "grain directory") { w, i, gt in
          w.table(index: i, at: gt, redundantAt: nil)
        }
        findings.append(Finding("vmdk.check-limit", .info, field: "grain directory",
                                "the disk has \(l.gdEntries) grain tables (more than \(CheckLimits.maxTrackedGTs)): grains were checked against the fixed metadata only, and the redundant directory was not compared"))
      }
    }

    /// Sorted sweep: grain tables and directories must not overlap each other or the header.
    mutating func checkMetadataOverlaps() {
      meta.sort { $0.0 < $1.0 }
      var i = 1
      var furthest = 0
      while i < meta.count {
        let prev = meta[furthest], cur = meta[i]
        if cur.0 < prev.1 {
          // Two identical GT pointers from GD and RGD are the same table only if they are one
          // structure; GD and RGD tables are distinct copies, so any overlap is corruption.
          add("vmdk.gt-overlap", .corrupt, field: cur.2, offset: cur.0 * 512,
              "\(cur.2) (sectors \(cur.0)-\(cur.1 - 1)) overlaps \(prev.2) (sectors \(prev.0)-\(prev.1 - 1))")
        }
        if cur.1 > prev.1 { furthest = i }
        i += 1
      }
    }

    /// The metadata range holding `sector`, if any (binary search over the sorted ranges).
    func metadata(overlapping start: UInt64, _ end: UInt64) -> String? {
      var lo = 0, hi = meta.count
      while lo < hi {
        let mid = (lo + hi) / 2
        if meta[mid].0 < end { lo = mid + 1 } else { hi = mid }
      }
      // meta[0..<lo] start before `end`; look back a little for one that reaches `start`.
      var k = lo - 1
      var looked = 0
      while k >= 0, looked < 4 {
        if meta[k].1 > start { return meta[k].2 }
        k -= 1
        looked += 1
      }
      return nil
    }

    /// Length of the run of tables from `i` that lie back to back in the file (one read).
    func run(_ gts: [UInt32], from i: Int, limit: Int) -> Int {
      var n = 1
      while i + n < gts.count, n < limit, UInt64(gts[i + n]) == UInt64(gts[i]) + UInt64(n) * gtSectors,
            inFile(UInt64(gts[i + n]), gtSectors)
      {
        n += 1
      }
      return n
    }

    /// Every table of the primary directory, read in runs of back-to-back tables of at most
    /// `CheckLimits.piece` bytes, each compared with its redundant copy.
    mutating func tables(_ primary: [UInt32], redundant: [UInt32]?) {
      let stride = Int(gtSectors) * 512
      let limit = max(1, CheckLimits.piece / stride)
      var i = 0
      while i < primary.count {
        let gt = primary[i]
        guard gt != 0, inFile(UInt64(gt), gtSectors) else {
          if gt == 0, let r = redundant, i < r.count, r[i] != 0 {
            rgdMismatches += 1
            add("vmdk.rgd-mismatch", .corrupt, field: "grain directory", offset: l.gd * 512 + UInt64(i) * 4,
                "grain table \(i) is absent from the grain directory but present in the redundant one (sector \(r[i]))")
          }
          i += 1
          continue
        }
        let n = run(primary, from: i, limit: limit)
        guard let bytes = read(UInt64(gt), count: n * stride, "grain table \(i)") else { i += n; continue }
        var twins: [UInt8]?
        if let r = redundant, i + n <= r.count, r[i] != 0, inFile(UInt64(r[i]), gtSectors), run(r, from: i, limit: n) == n {
          twins = read(UInt64(r[i]), count: n * stride, "redundant grain table \(i)")
        }
        for k in 0..<n {
          let index = i + k
          let slice = bytes[(k * stride)..<(k * stride + Int(l.gtEntries) * 4)]
          if let r = redundant {
            compareRedundant(index, gt: primary[index], table: slice, rgt: index < r.count ? r[index] : 0,
                             twin: twins.map { $0[(k * stride)..<(k * stride + Int(l.gtEntries) * 4)] })
          }
          scan(slice, index: UInt64(index), gt: primary[index])
        }
        i += n
      }
    }

    mutating func read(_ sector: UInt64, count: Int, _ field: String) -> [UInt8]? {
      do {
        return try ctx.source.readExactly(at: sector * 512, count: count, format: "vmdk", field: field)
      } catch {
        findings.append(Finding(corrupt: error))
        checkErrors += 1
        return nil
      }
    }

    mutating func compareRedundant(_ index: Int, gt: UInt32, table: ArraySlice<UInt8>, rgt: UInt32, twin: ArraySlice<UInt8>?) {
      if rgt == 0 {
        rgdMismatches += 1
        add("vmdk.rgd-mismatch", .corrupt, field: "redundant grain directory", offset: nil,
            "grain table \(index) exists (sector \(gt)) but the redundant directory has none")
        return
      }
      guard inFile(UInt64(rgt), gtSectors) else { return }  // reported as vmdk.gt-out-of-range
      var copy = twin
      if copy == nil {
        copy = read(UInt64(rgt), count: table.count, "redundant grain table \(index)")?[...]
      }
      if let copy, !VMDKProbe.GrainWalker.same(copy, table) {
        rgdMismatches += 1
        add("vmdk.rgd-mismatch", .corrupt, field: "redundant grain table", offset: UInt64(rgt) * 512,
            "grain table \(index) (sector \(gt)) and its redundant copy (sector \(rgt)) differ")
      }
    }

    /// Byte equality with memcmp (tables are compared whole).
    static func same(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
      guard a.count == b.count else { return false }
      return a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in
          guard let px = x.baseAddress, let py = y.baseAddress else { return true }
          return memcmp(px, py, x.count) == 0
        }
      }
    }

    /// One grain table's entries: zero entries are skipped eight bytes at a time.
    mutating func scan(_ table: ArraySlice<UInt8>, index: UInt64, gt: UInt32) {
      let count = Int(l.gtEntries)
      var k = 0
      while k < count {
        // Find the next non-zero entry in the raw bytes.
        var g: UInt32 = 0
        table.withUnsafeBytes { raw in
          while k + 1 < count, raw.loadUnaligned(fromByteOffset: k * 4, as: UInt64.self) == 0 { k += 2 }
          while k < count {
            g = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: k * 4, as: UInt32.self))
            if g != 0 { break }
            k += 1
          }
        }
        guard k < count else { break }
        grain(g, guestGrain: index * l.gtEntries + UInt64(k), entryOffset: UInt64(gt) * 512 + UInt64(k) * 4)
        k += 1
      }
    }

    /// A single table (the capped path, without the redundant comparison).
    mutating func table(index: UInt64, at gt: UInt32, redundantAt rgt: UInt32?) {
      guard gt != 0, inFile(UInt64(gt), gtSectors),
            let bytes = read(UInt64(gt), count: Int(l.gtEntries * 4), "grain table \(index)")
      else { return }
      scan(bytes[...], index: index, gt: gt)
    }

    mutating func grain(_ g: UInt32, guestGrain: UInt64, entryOffset: UInt64) {
      if g == 1 && l.zeroedGrains {
        zero += 1
        return
      }
      allocated += 1
      let start = UInt64(g)
      if guestGrain * l.grainSize >= l.capacity {
        add("vmdk.grain-out-of-range", .corrupt, field: "grain table", offset: entryOffset,
            "guest grain \(guestGrain) lies beyond the disk's capacity (\(l.capacity) sectors) but is allocated")
        return
      }
      var sectors = l.grainSize
      if l.markers {
        // The entry points at a grain marker: lba (u64) and compressed size (u32), then data.
        guard start < fileSectors, let m = try? ctx.source.readExactly(at: start * 512, count: 12, format: "vmdk", field: "grain marker")
        else {
          add("vmdk.grain-out-of-range", .corrupt, field: "grain table", offset: entryOffset,
              "guest grain \(guestGrain) points at sector \(start), beyond the end of the file (\(fileSectors) sectors)")
          return
        }
        let lba = m.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        let size = m.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        if lba != guestGrain * l.grainSize || size == 0 || UInt64(size) > CheckLimits.maxCompressed(l.grainSize * 512) {
          add("vmdk.grain-marker", .corrupt, field: "grain marker", offset: start * 512,
              "guest grain \(guestGrain) points at sector \(start), whose marker says lba \(lba), \(size) bytes (expected lba \(guestGrain * l.grainSize), 1 to \(CheckLimits.maxCompressed(l.grainSize * 512)) bytes)")
          return
        }
        sectors = Checked.ceilDiv(12 + UInt64(size), 512)
        if inFile(start, sectors) { inflateGrain(at: start, size: size, guestGrain: guestGrain) }
      }
      guard inFile(start, sectors) else {
        add("vmdk.grain-out-of-range", .corrupt, field: "grain table", offset: entryOffset,
            "guest grain \(guestGrain) at sectors \(start)-\(start + sectors - 1) ends beyond the end of the file (\(fileSectors) sectors)")
        return
      }
      if let what = metadata(overlapping: start, start + sectors) {
        add("vmdk.grain-overlap", .corrupt, field: "grain table", offset: entryOffset,
            "guest grain \(guestGrain) at sector \(start) overlaps the \(what)")
        return
      }
      if !l.markers, start % l.grainSize != 0 {
        add("vmdk.grain-unaligned", .warning, field: "grain table", offset: entryOffset,
            "guest grain \(guestGrain) starts at sector \(start), not a multiple of the grain size (\(l.grainSize))")
        return
      }
      let slot = start / bitmapUnit
      if slot < bitmapBits {
        let w = Int(slot >> 6), b = UInt64(1) << (slot & 63)
        if bitmap[w] & b == 0, start >= l.overHead { distinctGrains += 1 }
        if bitmap[w] & b != 0 {
          add("vmdk.grain-overlap", .corrupt, field: "grain table", offset: entryOffset,
              "guest grain \(guestGrain) at sector \(start) is also used by another guest grain: writing one changes both")
        }
        bitmap[w] |= b
      }
    }

    /// Inflates one compressed grain: it must be a complete zlib stream of exactly one grain.
    mutating func inflateGrain(at sector: UInt64, size: UInt32, guestGrain: UInt64) {
      let grainBytes = l.grainSize * 512
      guard grainBytes <= CheckLimits.maxInflateGrain, inflated + grainBytes <= CheckLimits.maxInflatedBytes else {
        notInflated += 1
        return
      }
      guard let data = read(sector, count: 12 + Int(size), "grain data") else { return }
      if inflateBuffer.count != Int(grainBytes) + 1 { inflateBuffer = [UInt8](repeating: 0, count: Int(grainBytes) + 1) }
      let got = ZlibGrainInflate.inflate(data[12...], into: &inflateBuffer)
      inflated += grainBytes
      if got != Int(grainBytes) {
        add("vmdk.grain-inflate", .corrupt, field: "grain data", offset: sector * 512 + 12,
            "guest grain \(guestGrain)'s \(size) compressed bytes at sector \(sector) \(got.map { "inflate to \($0) bytes, not \(grainBytes)" } ?? "are not a complete zlib stream of at most one grain"): qemu refuses to read it")
      }
    }

    /// Walks the marker stream from overHead: grain markers (size > 0) and metadata markers
    /// (size 0: end-of-stream, grain table, grain directory, footer). Each step advances at
    /// least one sector.
    mutating func walkStream() {
      var sector = max(l.overHead, 1)
      var sawEOS = false
      while sector < fileSectors {
        let m: [UInt8]
        do {
          m = try ctx.source.readExactly(at: sector * 512, count: min(512, Int(ctx.size - sector * 512)), format: "vmdk",
                                         field: "stream marker")
        } catch {
          findings.append(Finding(corrupt: error))
          checkErrors += 1
          return
        }
        guard m.count >= 16 else { break }
        let val = m.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        let size = m.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        let type = m.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
        if size != 0 {
          streamGrains += 1
          if val >= l.capacity || val % l.grainSize != 0 || UInt64(size) > CheckLimits.maxCompressed(l.grainSize * 512) {
            add("vmdk.marker-invalid", .corrupt, field: "grain marker", offset: sector * 512,
                "grain marker for lba \(val) with \(size) bytes: the lba must be grain-aligned and below \(l.capacity), the size at most \(CheckLimits.maxCompressed(l.grainSize * 512))")
            return
          }
          sector += Checked.ceilDiv(12 + UInt64(size), 512)
          continue
        }
        switch type {
        case Marker.endOfStream:
          sawEOS = true
        case Marker.grainTable, Marker.grainDirectory, Marker.footer:
          let expected = type == Marker.grainTable ? gtSectors : type == Marker.grainDirectory ? gdSectors : 1
          if val != expected {
            add("vmdk.marker-invalid", .corrupt, field: "stream marker", offset: sector * 512,
                "a type-\(type) metadata marker declares \(val) sectors, expected \(expected)")
            return
          }
          sector += 1 + val
          continue
        default:
          add("vmdk.marker-invalid", .corrupt, field: "stream marker", offset: sector * 512,
              "unknown metadata marker type \(type)")
          return
        }
        if sawEOS {
          // qemu pads its streams with zero sectors (which read as end-of-stream markers);
          // only non-zero bytes after the marker are data a stream reader would skip.
          // Zero padding before a footer found by position (as qemu finds it) is harmless too.
          let footerStart = l.fixed.first { $0.2 == "footer" }.map { $0.0 * 512 }
          if let at = firstNonZero(from: (sector + 1) * 512), at != footerStart {
            add("vmdk.stream-trailing-data", .warning, field: "end-of-stream marker", offset: at,
                "the end-of-stream marker at sector \(sector) is followed by data at \(hex(at)), which stream readers ignore")
          }
          break
        }
      }
      if streamGrains > allocated {
        leaks += streamGrains - allocated
      }
    }

    /// The offset of the first non-zero byte at or after `offset`, read in pieces.
    mutating func firstNonZero(from offset: UInt64) -> UInt64? {
      var at = offset
      while at < ctx.size {
        let n = Int(min(UInt64(CheckLimits.piece), ctx.size - at))
        guard let b = try? ctx.source.readExactly(at: at, count: n, format: "vmdk", field: "stream tail") else {
          checkErrors += 1
          return nil
        }
        if let i = b.firstIndex(where: { $0 != 0 }) { return at + UInt64(i) }
        at += UInt64(n)
      }
      return nil
    }

    /// Uncompressed grain slots after overHead that no table uses (VMware and qemu keep all
    /// metadata before overHead, so the slots after it are grains).
    var distinctGrains: UInt64 = 0

    mutating func finish(into report: inout CheckReport) {
      if !l.markers, bitmapBits > 0, fileSectors > l.overHead {
        let slots = (fileSectors - l.overHead) / l.grainSize
        if slots > distinctGrains { leaks += slots - distinctGrains }
      }
      for (id, n) in suppressed.sorted(by: { $0.key < $1.key }) {
        findings.append(Finding(id, findings.first { $0.id == id }?.severity ?? .corrupt, "\(n) more of the same"))
      }
      report.findings = findings
      report.counts.set("check-errors", checkErrors)
      report.counts.set("corruptions", corruptions)
      report.counts.set("leaks", leaks)
      report.counts.set("allocated-clusters", allocated)
      report.counts.set("zero-clusters", zero)
      report.counts.set("total-clusters", Checked.ceilDiv(l.capacity, l.grainSize))
      if l.rgd != nil { report.counts.set("rgd-mismatches", rgdMismatches) }
      if l.markers {
        report.counts.set("stream-grains", streamGrains)
        report.counts.set("inflated-grains", inflated / max(l.grainSize * 512, 1))
        if notInflated > 0 {
          report.findings.append(Finding("vmdk.check-limit", .info, field: "grain data",
                                         "\(notInflated) compressed grains were not inflated (limit \(CheckLimits.maxInflatedBytes) bytes of output, grains up to \(CheckLimits.maxInflateGrain) bytes)"))
        }
      }
    }
  }
}
