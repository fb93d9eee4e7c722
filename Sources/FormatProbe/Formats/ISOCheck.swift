/// `imgtool check` for ISO 9660: walks the directory trees (primary and Joliet) breadth-first and
/// checks every record's extent against the volume and the file, and that no directory is reached
/// twice (a loop a recursive reader never leaves). Bounded by `CheckLimits`; memory is one
/// directory's bytes plus a set of visited directory extents.
///
/// Directory record (ECMA-119 9.1):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | length of directory record (>= 34) |
/// | 1 | 1 | extended attribute record length (blocks before the data) |
/// | 2 | 8 | location of extent (both-endian 32) |
/// | 10 | 8 | data length (both-endian 32) |
/// | 18 | 7 | recording date and time |
/// | 25 | 1 | file flags (bit 1 directory, bit 7 multi-extent) |
/// | 28 | 4 | volume sequence number (both-endian 16) |
/// | 32 | 1 | length of file identifier |
/// | 33 | n | file identifier (0x00 is ".", 0x01 is "..") |
///
/// Records never cross a 2048-byte sector; a zero length byte means "continue at the next sector".
extension ISOProbe: DeepCheckable {
  public enum CheckLimits {
    /// Directories walked per tree. Large distribution DVDs have a few tens of thousands.
    public static let maxDirectories = 1 << 17
    /// Directory records read in all. Keeps time linear and bounded on a crafted image.
    public static let maxRecords = 1 << 21
    /// Bytes of one directory read (in pieces of `pieceBytes`); a directory of 100 000 entries is
    /// about 5 MiB.
    public static let maxDirectoryBytes: UInt64 = 16 << 20
    /// Directory bytes read in all: real discs have a few MiB of directories (a full DVD some
    /// tens); without it, many records naming large overlapping "directories" would make a small
    /// crafted file cost terabytes of reads.
    public static let maxTotalDirectoryBytes: UInt64 = 256 << 20
    /// One read while walking a directory.
    public static let pieceBytes = 1 << 20
    /// Findings of one id listed before they are summarised.
    public static let maxFindingsPerKind = 16
    /// File extents remembered per tree to compare the primary and Joliet trees (16 bytes each
    /// in a set: at most a few tens of MiB); beyond this the comparison is skipped.
    public static let maxComparedFiles = 1 << 20
  }

  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var walker = TreeWalker(ctx: ctx)
    var roots: [(String, ByteReader)] = []
    for i in 0..<Limits.maxDescriptors {
      let n = Limits.firstDescriptor + i
      guard let r = try? sector(ctx, n, "volume descriptor \(n)"), r.matches(cd001, at: 1),
            let type = try? r.u8(at: 0, "descriptor type")
      else { break }
      if type == 255 { break }
      if type == 1, !roots.contains(where: { $0.0 == "primary" }) { roots.append(("primary", r)) }
      if type == 2, r.matches([0x25, 0x2F], at: 88), !roots.contains(where: { $0.0 == "joliet" }) { roots.append(("joliet", r)) }
    }
    var extents: [String: Set<UInt64>] = [:]
    for (name, d) in roots {
      walker.fileExtents = []
      walker.walk(name, descriptor: d)
      if walker.fileExtents.count < CheckLimits.maxComparedFiles { extents[name] = walker.fileExtents }
    }
    // Windows reads the Joliet tree, Linux and most tools the primary (Rock Ridge) one: files only
    // one of them lists are content one kind of reader never sees.
    if let primary = extents["primary"], let joliet = extents["joliet"] {
      let onlyPrimary = primary.subtracting(joliet).count, onlyJoliet = joliet.subtracting(primary).count
      if onlyPrimary > 0 || onlyJoliet > 0 {
        walker.add(Finding("iso.tree-mismatch", .info,
                           "the ISO 9660 and Joliet directory trees list different file data (\(onlyPrimary) extents only in the ISO 9660 tree, \(onlyJoliet) only in Joliet): Windows and Linux readers see different files"))
      }
    }
    var report = CheckReport()
    report.findings = walker.findings
    report.counts.set("directories", walker.directories)
    report.counts.set("files", walker.files)
    report.counts.set("corruptions", walker.findings.filter { $0.severity == .corrupt }.count)
    report.counts.set("check-errors", walker.checkErrors)
    return report
  }

  struct TreeWalker {
    let ctx: ProbeContext
    var findings: [Finding] = []
    var perKind: [String: Int] = [:]
    var directories = 0
    var files = 0
    var records = 0
    var checkErrors = 0
    var stopped = false
    var directoryBytes: UInt64 = 0
    /// (extent << 32 | length) of the files of the tree being walked, up to the compare limit.
    var fileExtents: Set<UInt64> = []

    init(ctx: ProbeContext) { self.ctx = ctx }

    mutating func add(_ f: Finding) {
      let n = perKind[f.id, default: 0]
      perKind[f.id] = n + 1
      if n < CheckLimits.maxFindingsPerKind {
        findings.append(f)
      } else if n == CheckLimits.maxFindingsPerKind {
        findings.append(Finding(f.id, f.severity, "further \(f.id) findings are not listed"))
      }
    }

    mutating func limit(_ what: String) {
      guard !stopped else { return }
      stopped = true
      add(Finding("iso.directory-limit", .warning, "the directory tree has more than \(what); the rest is not checked"))
    }

    /// Breadth-first walk from the root directory record at 156 of a volume descriptor.
    mutating func walk(_ tree: String, descriptor d: ByteReader) {
      guard let blockSizeRaw = try? d.u16LE(at: 128, "logical block size"), [512, 1024, 2048].contains(blockSizeRaw),
            let blocks = try? d.u32LE(at: 80, "volume space size"),
            let rootLBA = try? d.u32LE(at: 156 + 2, "root directory extent"),
            let rootLength = try? d.u32LE(at: 156 + 10, "root directory data length")
      else { return }
      let blockSize = UInt64(blockSizeRaw)
      let volumeEnd = min(UInt64(blocks) * blockSize, ctx.size)
      var visited: Set<UInt32> = [rootLBA]
      var queue: [(lba: UInt32, length: UInt32, path: String)] = [(rootLBA, rootLength, "/")]
      var head = 0
      stopped = false
      while head < queue.count, !stopped {
        let dir = queue[head]
        head += 1
        directories += 1
        let start = UInt64(dir.lba) * blockSize
        guard inRange(start, UInt64(dir.length), volumeEnd, tree: tree, path: dir.path, at: d.base + 156) else { continue }
        var length = UInt64(dir.length)
        if length > CheckLimits.maxDirectoryBytes {
          add(Finding("iso.directory-limit", .warning, offset: start,
                      "\(tree) directory \(dir.path) is \(length) bytes; only the first \(CheckLimits.maxDirectoryBytes) are checked"))
          length = CheckLimits.maxDirectoryBytes
        }
        var done: UInt64 = 0
        while done < length, !stopped {
          let n = Int(min(UInt64(CheckLimits.pieceBytes), length - done))
          directoryBytes += UInt64(n)
          guard directoryBytes <= CheckLimits.maxTotalDirectoryBytes else {
            limit("\(CheckLimits.maxTotalDirectoryBytes) bytes of directories")
            break
          }
          let bytes: [UInt8]
          do {
            bytes = try ctx.read(at: start + done, count: n)
          } catch {
            checkErrors += 1
            add(Finding(error.kind == .needsSeekable ? "iso.needs-seekable" : "iso.extent-range", .warning, offset: start + done,
                        "\(tree) directory \(dir.path) could not be read: \(error.description)"))
            break
          }
          for child in records(bytes, base: start + done, tree: tree, path: dir.path) {
            if child.isDirectory {
              if visited.contains(child.lba) {
                add(Finding("iso.directory-loop", .corrupt, offset: child.offset,
                            "\(tree) directory \(path(dir.path, bytes, child, tree: tree)) points at extent \(child.lba), a directory already walked: a reader that follows the tree recurses forever"))
                continue
              }
              guard visited.count < CheckLimits.maxDirectories else {
                limit("\(CheckLimits.maxDirectories) directories")
                break
              }
              visited.insert(child.lba)
              queue.append((child.lba, child.length, path(dir.path, bytes, child, tree: tree)))
            } else {
              files += 1
              if fileExtents.count < CheckLimits.maxComparedFiles {
                fileExtents.insert(UInt64(child.lba) << 32 | UInt64(child.length))
              }
              let start = (UInt64(child.lba) + UInt64(child.xar)) * blockSize
              let length = UInt64(child.length)
              if length > 0, start >= volumeEnd || length > volumeEnd - start {
                _ = inRange(start, length, volumeEnd, tree: tree, path: path(dir.path, bytes, child, tree: tree), at: child.offset)
              }
            }
          }
          done += UInt64(n)
        }
        // Release walked entries so the queue holds only what is still to visit.
        if head > 4096 {
          queue.removeFirst(head)
          head = 0
        }
      }
    }

    /// Checks that `length` bytes at `start` lie in the volume and the file.
    mutating func inRange(_ start: UInt64, _ length: UInt64, _ volumeEnd: UInt64, tree: String, path: String, at offset: UInt64) -> Bool {
      guard length > 0 else { return true }
      if start >= volumeEnd || length > volumeEnd - start {
        add(Finding("iso.extent-range", .corrupt, offset: offset,
                    "\(tree) \(path): extent at \(hex(start)) of \(length) bytes ends beyond the volume or the file (\(volumeEnd) bytes)"))
        return false
      }
      return true
    }

    struct Child {
      var lba: UInt32
      var xar: UInt8
      var length: UInt32
      var isDirectory: Bool
      /// Where the file identifier is in the directory bytes (names are built only when needed).
      var name: Range<Int>
      var offset: UInt64
    }

    /// The child's path for messages: d-characters, or UTF-16BE in the Joliet tree.
    func path(_ parent: String, _ bytes: [UInt8], _ child: Child, tree: String) -> String {
      let raw = bytes[child.name]
      let name = tree == "joliet" ? Text.utf16BE(raw) : Text.ascii(raw)
      return (parent == "/" ? "/" : parent + "/") + name
    }

    /// Decodes the records of `bytes` (whole sectors of one directory), skipping "." and "..".
    mutating func records(_ bytes: [UInt8], base: UInt64, tree: String, path: String) -> [Child] {
      var out: [Child] = []
      let sector = Limits.sectorSize
      var sectorStart = 0
      bytes.withUnsafeBytes { raw in
        while sectorStart < raw.count, !stopped {
          let end = min(sectorStart + sector, raw.count)
          var p = sectorStart
          while p < end {
            let len = Int(raw[p])
            if len == 0 { break }
            records += 1
            if records > CheckLimits.maxRecords {
              limit("\(CheckLimits.maxRecords) directory records")
              return
            }
            let nameLength = p + 32 < end ? Int(raw[p + 32]) : 0
            guard len >= 34, len <= end - p, 33 + nameLength <= len else {
              add(Finding("iso.directory-record", .corrupt, offset: base + UInt64(p),
                          "\(tree) directory \(path): record of \(len) bytes (identifier \(nameLength) bytes) does not fit its sector"))
              break
            }
            let lba = raw.loadUnaligned(fromByteOffset: p + 2, as: UInt32.self).littleEndian
            let lbaBE = raw.loadUnaligned(fromByteOffset: p + 6, as: UInt32.self).bigEndian
            let length = raw.loadUnaligned(fromByteOffset: p + 10, as: UInt32.self).littleEndian
            let lengthBE = raw.loadUnaligned(fromByteOffset: p + 14, as: UInt32.self).bigEndian
            if lba != lbaBE || length != lengthBE {
              add(Finding("iso.both-endian-mismatch", .corrupt, offset: base + UInt64(p + 2),
                          "\(tree) directory \(path): a record's extent or length differs between its little- and big-endian halves"))
            }
            let flags = raw[p + 25]
            let isSelfOrParent = nameLength == 1 && raw[p + 33] <= 1
            if !isSelfOrParent {
              out.append(Child(lba: lba, xar: raw[p + 1], length: length, isDirectory: flags & 0x02 != 0,
                               name: (p + 33)..<(p + 33 + nameLength), offset: base + UInt64(p)))
            }
            p += len
          }
          sectorStart += sector
        }
      }
      return out
    }
  }
}
