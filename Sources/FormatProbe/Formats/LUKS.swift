/// LUKS encrypted containers, versions 1 and 2.
///
/// References: "LUKS On-Disk Format Specification Version 1.2.3" (Clemens Fruhwirth) and
/// "LUKS2 On-Disk Format Specification" (Milan Broz). Detection: the magic `LUKS\xba\xbe` at offset 0
/// and a big-endian version 1 or 2 at offset 6. LUKS1 is one 592-byte binary header; LUKS2 is a
/// 4096-byte binary header followed by a JSON metadata area (`hdr_size` bytes in all), then a
/// second copy. Everything `info` needs lies in the first `hdr_size` bytes (at most 4 MiB).
public enum LUKSProbe: FormatProbe {
  public static let id = "luks"
  public static let role = ProbeRole.image
  static let format = "luks"

  public static func probe(_ ctx: ProbeContext) throws(ImageError) -> ImageInfo? {
    let r = ctx.headReader(format)
    guard r.matches(LUKSHeader.magic, at: 0) else { return nil }
    let version = try r.u16BE(at: 6, "version")
    switch version {
    case 1:
      let h = try LUKSHeader.decode(try ctx.reader(at: 0, count: LUKSHeader.size, format, "header"), format: format)
      return try luks1Info(h, fileSize: ctx.size)
    case 2:
      let h = try LUKS2Header.decode(ctx)
      return try h.info(fileSize: ctx.size)
    default:
      throw ImageError(.unsupported, format: format, field: "version", offset: 6, "is \(version); LUKS defines versions 1 and 2")
    }
  }

  static func luks1Info(_ h: LUKSHeader, fileSize: UInt64) throws(ImageError) -> ImageInfo {
    let payload = h.payloadOffsetBytes
    guard payload <= fileSize else {
      throw ImageError(.truncated, format: format, field: "payload_offset", offset: 104,
                       "is \(h.payloadOffset) sectors (\(payload) bytes), beyond the end of the \(fileSize)-byte file",
                       finding: "luks.truncated")
    }
    var info = ImageInfo(probe: id, qemuFormat: "luks", diskFormat: .luks, subformat: "luks1", virtualSize: fileSize - payload)
    info.encrypted = true
    info.dirty = false
    var fs = h.qemuJSON()
    fs.set("version", UInt64(1))
    info.formatSpecific = fs
    info.findings.append(encryptedFinding)
    return info
  }

  static let encryptedFinding = Finding(
    "luks.encrypted", .unsafe, field: "magic", offset: 0,
    "the file is a LUKS encrypted container: its content cannot be inspected or verified without the key",
    fix: "upload the decrypted disk, or allow luks.encrypted where encrypted volumes are expected")
}

enum LUKSLimits {
  /// LUKS1 has exactly 8 key slots (spec, "LUKS partition header").
  static let luks1KeySlots = 8
  /// Anti-forensic stripes per key slot: cryptsetup and QEMU write 4000 (QEMU refuses others);
  /// 65536 bounds the key material size a slot may claim without rejecting unusual writers.
  static let maxStripes: UInt32 = 1 << 16
  /// LUKS2 header sizes: 16 KiB .. 4 MiB, a power of two (LUKS2 spec, "hdr_size").
  static let luks2HeaderSizes: ClosedRange<UInt64> = (16 << 10)...(4 << 20)
  /// Key slots, segments and digests listed from LUKS2 JSON (cryptsetup allows 32 key slots).
  static let maxLUKS2Objects = 64
}

/// The LUKS1 header (spec version 1.2.3, "LUKS partition header"), big-endian:
///
///     offset size field
///          0    6 magic            "LUKS\xba\xbe"
///          6    2 version          1
///          8   32 cipher_name      "aes"
///         40   32 cipher_mode      "xts-plain64", "cbc-essiv:sha256"
///         72   32 hash_spec        "sha256"
///        104    4 payload_offset   sectors of 512 bytes
///        108    4 key_bytes        volume key length
///        112   20 mk_digest
///        132   32 mk_digest_salt
///        164    4 mk_digest_iter
///        168   40 uuid             text
///        208  384 key slots, 8 x 48 bytes:
///                   0 4 active (0x00ac71f3 enabled, 0x0000dead disabled)
///                   4 4 iterations
///                   8 32 salt
///                  40 4 key_material_offset (sectors)
///                  44 4 stripes
struct LUKSHeader: Sendable {
  static let magic: [UInt8] = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]
  static let size = 592
  static let slotEnabled: UInt32 = 0x00ac_71f3
  static let slotDisabled: UInt32 = 0x0000_dead

  struct KeySlot: Sendable {
    var active: UInt32
    var iterations: UInt32
    var keyMaterialOffset: UInt32
    var stripes: UInt32
  }

  var version: UInt16
  var cipherName: String
  var cipherMode: String
  var hashSpec: String
  var payloadOffset: UInt32
  var keyBytes: UInt32
  var mkDigestIter: UInt32
  var uuid: String
  var slots: [KeySlot]

  var payloadOffsetBytes: UInt64 { UInt64(payloadOffset) * 512 }

  static func decode(_ reader: ByteReader, format: String) throws(ImageError) -> LUKSHeader {
    var r = reader
    guard r.matches(magic, at: 0) else {
      throw ImageError(.invalidField, format: format, field: "LUKS magic", offset: r.base, "is missing")
    }
    try r.skip(6, "magic")
    let version = try r.u16BE("version")
    guard version == 1 else {
      throw ImageError(.unsupported, format: format, field: "LUKS version", offset: r.base + 6, "is \(version); expected 1")
    }
    var h = LUKSHeader(version: version, cipherName: try r.text(32, "cipher_name"), cipherMode: try r.text(32, "cipher_mode"),
                       hashSpec: try r.text(32, "hash_spec"), payloadOffset: try r.u32BE("payload_offset"),
                       keyBytes: try r.u32BE("key_bytes"), mkDigestIter: 0, uuid: "", slots: [])
    try r.skip(20 + 32, "mk_digest")
    h.mkDigestIter = try r.u32BE("mk_digest_iter")
    h.uuid = try r.text(40, "uuid")
    for i in 0..<LUKSLimits.luks1KeySlots {
      let active = try r.u32BE("key slot \(i) active")
      let iterations = try r.u32BE("key slot \(i) iterations")
      try r.skip(32, "key slot \(i) salt")
      let material = try r.u32BE("key slot \(i) key_material_offset")
      let s = KeySlot(active: active, iterations: iterations, keyMaterialOffset: material,
                      stripes: try r.u32BE("key slot \(i) stripes"))
      guard s.active == slotEnabled || s.active == slotDisabled else {
        throw ImageError(.invalidField, format: format, field: "key slot \(i) active", offset: r.base + 208 + UInt64(i * 48),
                         "is \(hex(s.active)); expected 0x00ac71f3 (enabled) or 0xdead (disabled)", finding: "luks.key-slot")
      }
      if s.active == slotEnabled, s.stripes == 0 || s.stripes > LUKSLimits.maxStripes {
        throw ImageError(.invalidField, format: format, field: "key slot \(i) stripes", offset: r.base + 208 + UInt64(i * 48) + 44,
                         "is \(s.stripes)", finding: "luks.key-slot")
      }
      h.slots.append(s)
    }
    guard h.keyBytes > 0, h.keyBytes <= 256 else {
      throw ImageError(.invalidField, format: format, field: "key_bytes", offset: r.base + 108, "is \(h.keyBytes)")
    }
    return h
  }

  /// QEMU's `format-specific.data` for LUKS (qapi QCryptoBlockInfoLUKS), in QEMU's key order;
  /// `format` (qcow2's `encrypt.format`) goes after `uuid` as QEMU places it.
  func qemuJSON(format: String? = nil) -> JSONObject {
    var o = JSONObject()
    let mode = LUKSCipher.parseMode(cipherMode)
    o.set("ivgen-alg", mode.ivgen)
    o.set("ivgen-hash-alg", mode.ivgenHash)
    o.set("hash-alg", hashSpec)
    o.set("cipher-alg", LUKSCipher.algorithm(cipherName, mode: mode.mode, keyBytes: UInt64(keyBytes)))
    o.set("uuid", uuid)
    o.set("format", format)
    o.set("cipher-mode", mode.mode)
    o.set("slots", JSON.array(slots.map { s in
      var j = JSONObject()
      j.set("active", s.active == LUKSHeader.slotEnabled)
      if s.active == LUKSHeader.slotEnabled {
        j.set("iters", UInt64(s.iterations))
        j.set("key-offset", UInt64(s.keyMaterialOffset) * 512)
        j.set("stripes", UInt64(s.stripes))
      } else {
        j.set("key-offset", UInt64(s.keyMaterialOffset) * 512)
      }
      return j.json
    }))
    o.set("payload-offset", payloadOffsetBytes)
    o.set("master-key-iters", UInt64(mkDigestIter))
    return o
  }
}

/// Cipher naming shared by LUKS1 and LUKS2, rendered the way QEMU names them (`aes-256`, `xts`, `plain64`).
enum LUKSCipher {
  static func parseMode(_ mode: String) -> (mode: String, ivgen: String?, ivgenHash: String?) {
    let parts = mode.split(separator: "-", maxSplits: 1).map(String.init)
    guard parts.count == 2 else { return (mode, nil, nil) }
    let iv = parts[1].split(separator: ":", maxSplits: 1).map(String.init)
    return (parts[0], iv.first, iv.count > 1 ? iv[1] : nil)
  }

  /// `aes` with a 64-byte XTS key is `aes-256`: XTS splits the key in two.
  static func algorithm(_ name: String, mode: String, keyBytes: UInt64) -> String {
    let bits = (mode == "xts" ? keyBytes / 2 : keyBytes) * 8
    return "\(name.lowercased())-\(bits)"
  }
}

/// The LUKS2 binary header (LUKS2 spec, "Binary header"), big-endian:
///
///     offset size field
///          0    6 magic            "LUKS\xba\xbe" ("SKUL\xba\xbe" in the second copy)
///          6    2 version          2
///          8    8 hdr_size         binary header + JSON area, bytes
///         16    8 seqid
///         24   48 label
///         72   32 checksum_alg     "sha256"
///        104   64 salt
///        168   40 uuid
///        208   48 subsystem
///        256    8 hdr_offset       offset of this copy
///        264  184 padding
///        448   64 csum             over hdr_size bytes with this field zeroed
///        512 3584 padding
///       4096    . JSON metadata, NUL padded, to hdr_size
struct LUKS2Header: Sendable {
  var hdrSize: UInt64
  var seqid: UInt64
  var label: String
  var checksumAlg: String
  var uuid: String
  var subsystem: String
  var hdrOffset: UInt64
  var csum: [UInt8]
  var json: JSON
  var jsonBytes: Int

  static let format = "luks"

  static func decode(_ ctx: ProbeContext) throws(ImageError) -> LUKS2Header {
    let f = format
    var r = try ctx.reader(at: 0, count: 4096, f, "LUKS2 binary header")
    try r.skip(8, "magic")
    let hdrSize = try r.u64BE("hdr_size")
    guard LUKSLimits.luks2HeaderSizes.contains(hdrSize), Checked.isPowerOfTwo(hdrSize) else {
      throw ImageError(.invalidField, format: f, field: "hdr_size", offset: 8,
                       "is \(hdrSize); LUKS2 headers are 16 KiB to 4 MiB, a power of two", finding: "luks.header")
    }
    let seqid = try r.u64BE("seqid")
    let label = try r.text(48, "label")
    let alg = try r.text(32, "checksum_alg")
    try r.skip(64, "salt")
    let uuid = try r.text(40, "uuid")
    let subsystem = try r.text(48, "subsystem")
    let hdrOffset = try r.u64BE("hdr_offset")
    guard hdrOffset == 0 else {
      throw ImageError(.invalidField, format: f, field: "hdr_offset", offset: 256, "is \(hdrOffset); the primary header is at 0",
                       finding: "luks.header")
    }
    try r.skip(184, "padding")
    let csum = Array(try r.bytes(64, "csum"))
    let area = try ctx.reader(at: 4096, count: Int(hdrSize) - 4096, f, "LUKS2 JSON area")
    var text = Array(area.bytes)
    if let nul = text.firstIndex(of: 0) { text.removeSubrange(nul...) }
    let json = try JSONParser.parse(text, format: "luks")
    guard case .object = json else {
      throw ImageError(.invalidField, format: f, field: "LUKS2 JSON area", offset: 4096, "is not a JSON object", finding: "luks.json")
    }
    return LUKS2Header(hdrSize: hdrSize, seqid: seqid, label: label, checksumAlg: alg, uuid: uuid, subsystem: subsystem,
                       hdrOffset: hdrOffset, csum: csum, json: json, jsonBytes: text.count)
  }

  /// LUKS2 stores numbers that may exceed 2^53 as decimal strings ("offset": "16777216").
  static func number(_ v: JSON?) -> UInt64? {
    if let s = v?.string { return UInt64(s) }
    return v?.uint
  }

  static func members(_ v: JSON?) -> [(String, JSON)] {
    if case let .object(pairs)? = v { return Array(pairs.prefix(LUKSLimits.maxLUKS2Objects)) }
    return []
  }

  func info(fileSize: UInt64) throws(ImageError) -> ImageInfo {
    let f = LUKS2Header.format
    let segments = LUKS2Header.members(json["segments"])
    guard let (_, seg) = segments.first(where: { $0.1["type"]?.string == "crypt" }) ?? segments.first else {
      throw ImageError(.invalidField, format: f, field: "segments", offset: 4096, "the JSON metadata has no data segment",
                       finding: "luks.json")
    }
    guard let offset = LUKS2Header.number(seg["offset"]) else {
      throw ImageError(.invalidField, format: f, field: "segments offset", offset: 4096, "is missing or not a number",
                       finding: "luks.json")
    }
    guard offset <= fileSize else {
      throw ImageError(.truncated, format: f, field: "segments offset", offset: 4096,
                       "is \(offset), beyond the end of the \(fileSize)-byte file", finding: "luks.truncated")
    }
    var size = fileSize - offset
    let sizeText = seg["size"]?.string ?? "dynamic"
    if sizeText != "dynamic" {
      guard let s = UInt64(sizeText) else {
        throw ImageError(.invalidField, format: f, field: "segments size", offset: 4096, "is '\(sizeText)', not a number or \"dynamic\"",
                         finding: "luks.json")
      }
      size = s
    }
    var info = ImageInfo(probe: LUKSProbe.id, qemuFormat: "luks", diskFormat: .luks, subformat: "luks2", virtualSize: size)
    info.encrypted = true
    info.dirty = false
    let encryption = seg["encryption"]?.string ?? ""
    let parts = encryption.split(separator: "-", maxSplits: 1).map(String.init)
    let mode = LUKSCipher.parseMode(parts.count > 1 ? parts[1] : "")
    let keyslots = LUKS2Header.members(json["keyslots"])
    let keySize = keyslots.lazy.compactMap { LUKS2Header.number($0.1["key_size"]) }.first
    var fs = JSONObject()
    fs.set("version", UInt64(2))
    fs.set("ivgen-alg", mode.ivgen)
    fs.set("ivgen-hash-alg", mode.ivgenHash)
    fs.set("cipher-alg", parts.first.map { name in keySize.map { LUKSCipher.algorithm(name, mode: mode.mode, keyBytes: $0) } ?? name })
    fs.set("uuid", uuid)
    fs.set("cipher-mode", mode.mode)
    fs.set("encryption", encryption)
    fs.set("sector-size", LUKS2Header.number(seg["sector_size"]))
    fs.set("slots", JSON.array(keyslots.map { id, slot in
      var o = JSONObject()
      o.set("id", id)
      o.set("active", true)
      o.set("type", slot["type"]?.string)
      o.set("key-size", LUKS2Header.number(slot["key_size"]))
      o.set("kdf", slot["kdf"]?["type"]?.string)
      o.set("iters", LUKS2Header.number(slot["kdf"]?["iterations"]) ?? LUKS2Header.number(slot["kdf"]?["time"]))
      o.set("memory", LUKS2Header.number(slot["kdf"]?["memory"]))
      o.set("key-offset", LUKS2Header.number(slot["area"]?["offset"]))
      o.set("key-area-size", LUKS2Header.number(slot["area"]?["size"]))
      return o.json
    }))
    fs.set("payload-offset", offset)
    fs.set("segment-size", sizeText)
    fs.set("label", label.isEmpty ? nil : label)
    fs.set("subsystem", subsystem.isEmpty ? nil : subsystem)
    fs.set("hdr-size", hdrSize)
    fs.set("seqid", seqid)
    fs.set("checksum-alg", checksumAlg)
    fs.set("tokens", UInt64(LUKS2Header.members(json["tokens"]).count))
    info.formatSpecific = fs
    info.findings.append(LUKSProbe.encryptedFinding)
    // Mandatory requirements (such as online re-encryption) stop readers that lack them.
    if let required = json.at("config.requirements.mandatory")?.array?.compactMap(\.string), !required.isEmpty {
      fs.set("requirements", JSON.array(required.prefix(LUKSLimits.maxLUKS2Objects).map { .string($0) }))
      info.formatSpecific = fs
      info.notes.append("the LUKS2 header requires \(required.joined(separator: ", ")); readers without it refuse the device")
    }
    if segments.count > 1 {
      info.notes.append("the LUKS2 header has \(segments.count) data segments (a re-encryption in progress or an unusual layout)")
    }
    if keyslots.isEmpty {
      info.notes.append("the LUKS2 header has no key slots: no passphrase can open it")
    }
    info.notes.append("qemu-img (QEMU 7.2) has no LUKS2 reader; it refuses this file")
    return info
  }
}

// MARK: deep check

extension LUKSProbe: DeepCheckable {
  /// Key slot areas must lie after the header, before the payload and inside the file, without
  /// overlapping; LUKS2 headers must match their checksums and have an intact second copy.
  public static func deepCheck(_ ctx: ProbeContext, _ info: ImageInfo) -> CheckReport {
    var report = CheckReport()
    var checkErrors = 0
    do {
      let version = try ctx.headReader(format).u16BE(at: 6, "version")
      if version == 1 {
        let h = try LUKSHeader.decode(try ctx.reader(at: 0, count: LUKSHeader.size, format, "header"), format: format)
        report.findings += checkKeySlots(h, fileSize: ctx.size)
      } else if version == 2 {
        let h = try LUKS2Header.decode(ctx)
        report.findings += try h.deepCheck(ctx)
      }
    } catch {
      if error.kind == .needsSeekable { checkErrors += 1 }
      report.findings.append(Finding(corrupt: error))
    }
    report.counts.set("check-errors", checkErrors)
    report.counts.set("corruptions", report.findings.filter { $0.severity == .corrupt }.count)
    return report
  }

  /// LUKS1 key material: `key_bytes * stripes` bytes from `key_material_offset` sectors (spec 2.4).
  static func checkKeySlots(_ h: LUKSHeader, fileSize: UInt64) -> [Finding] {
    var out: [Finding] = []
    var areas: [(Int, UInt64, UInt64)] = []
    for (i, s) in h.slots.enumerated() where s.active == LUKSHeader.slotEnabled {
      let start = UInt64(s.keyMaterialOffset) * 512
      let length = Checked.ceilDiv(UInt64(h.keyBytes) * UInt64(s.stripes), 512) * 512
      let at = UInt64(208 + i * 48 + 40)
      if start < UInt64(LUKSHeader.size) {
        out.append(Finding("luks.key-slot", .corrupt, field: "key slot \(i) key_material_offset", offset: at,
                           "key slot \(i) material at \(hex(start)) overlaps the header"))
      }
      if h.payloadOffset != 0, start + length > h.payloadOffsetBytes {
        out.append(Finding("luks.key-slot", .corrupt, field: "key slot \(i) key_material_offset", offset: at,
                           "key slot \(i) material (\(hex(start)), \(length) bytes) runs into the payload at \(hex(h.payloadOffsetBytes))"))
      }
      if start + length > fileSize {
        out.append(Finding("luks.truncated", .corrupt, field: "key slot \(i) key_material_offset", offset: at,
                           "key slot \(i) material (\(hex(start)), \(length) bytes) ends beyond the end of the file"))
      }
      for (j, s2, l2) in areas where start < s2 + l2 && s2 < start + length {
        out.append(Finding("luks.key-slot", .corrupt, field: "key slot \(i) key_material_offset", offset: at,
                           "key slots \(j) and \(i) share key material"))
      }
      areas.append((i, start, length))
    }
    return out
  }
}

extension LUKS2Header {
  /// The checksum covers the whole `hdr_size` bytes with the csum field zeroed (LUKS2 spec 2.1).
  static func checksum(_ area: [UInt8], algorithm: String) -> (stored: String, computed: String)? {
    guard algorithm == "sha256" || algorithm == "sha512" || algorithm == "sha1" else { return nil }
    let alg: Digest.Algorithm = algorithm == "sha256" ? .sha256 : algorithm == "sha512" ? .sha512 : .sha1
    let length = alg == .sha256 ? 32 : alg == .sha512 ? 64 : 20
    var copy = area
    let stored = Array(copy[448..<(448 + length)])
    for i in 448..<512 { copy[i] = 0 }
    let d = Digest(alg)
    d.update(copy)
    let digits = Array("0123456789abcdef".utf8)
    var hexStored = [UInt8]()
    for b in stored { hexStored.append(digits[Int(b >> 4)]); hexStored.append(digits[Int(b & 15)]) }
    return (String(decoding: hexStored, as: UTF8.self), d.finalHex())
  }

  func deepCheck(_ ctx: ProbeContext) throws(ImageError) -> [Finding] {
    let f = LUKS2Header.format
    var out: [Finding] = []
    let primary = try ctx.source.readExactly(at: 0, count: Int(hdrSize), format: f, field: "LUKS2 header")
    if let c = LUKS2Header.checksum(primary, algorithm: checksumAlg), c.stored != c.computed {
      out.append(Finding("luks.header-checksum", .corrupt, field: "csum", offset: 448,
                         "the primary LUKS2 header checksum is \(c.stored.prefix(16))..., computed \(c.computed.prefix(16))..."))
    } else if LUKS2Header.checksum(primary, algorithm: checksumAlg) == nil {
      out.append(Finding("luks.header-checksum", .warning, field: "checksum_alg", offset: 72,
                         "checksum algorithm '\(checksumAlg)' is not verified"))
    }
    // The second copy follows at hdr_size, with magic "SKUL\xba\xbe".
    let second = try ctx.source.readExactly(at: hdrSize, count: Int(hdrSize), format: f, field: "LUKS2 second header")
    let r = ByteReader(second, base: hdrSize, format: f)
    let version2 = try r.u16BE(at: 6, "version")
    let size2 = try r.u64BE(at: 8, "hdr_size")
    let offset2 = try r.u64BE(at: 256, "hdr_offset")
    if !r.matches([0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe], at: 0) || version2 != 2 || size2 != hdrSize || offset2 != hdrSize {
      out.append(Finding("luks.header", .corrupt, field: "second header", offset: hdrSize,
                         "the second LUKS2 header copy at \(hex(hdrSize)) is missing or inconsistent"))
    } else if let c = LUKS2Header.checksum(second, algorithm: checksumAlg), c.stored != c.computed {
      out.append(Finding("luks.header-checksum", .corrupt, field: "csum", offset: hdrSize + 448,
                         "the second LUKS2 header checksum does not match"))
    }
    // Key slot areas lie after both headers and before the data segment.
    let segmentOffset = LUKS2Header.members(json["segments"]).compactMap { LUKS2Header.number($0.1["offset"]) }.min()
    for (id, slot) in LUKS2Header.members(json["keyslots"]) {
      guard let offset = LUKS2Header.number(slot["area"]?["offset"]), let size = LUKS2Header.number(slot["area"]?["size"]) else {
        out.append(Finding("luks.key-slot", .corrupt, field: "keyslots", offset: 4096, "key slot \(id) has no area offset and size"))
        continue
      }
      let (end, overflow) = offset.addingReportingOverflow(size)
      if overflow || offset < 2 * hdrSize || end > ctx.size || (segmentOffset.map { end > $0 && $0 != 0 } ?? false) {
        out.append(Finding("luks.key-slot", .corrupt, field: "keyslots", offset: 4096,
                           "key slot \(id) area (\(hex(offset)), \(size) bytes) is outside the key slot area between the headers and the data"))
      }
    }
    return out
  }
}
