import Foundation
import XCTest
@testable import FormatProbe

/// A small deterministic fuzzer inside the test suite: valid images from the fixture groups, each
/// mutated a few hundred times (bytes, bits and header-sized words set to boundary values, in the
/// first 64 KiB where headers and tables start, and in the last 64 KiB where footers live, plus
/// truncations), every mutant detected, deep-checked and rendered. The seed is printed; set
/// `IMGTOOL_MUTATION_SEED` to replay a run.
final class MutationFuzzTests: XCTestCase {
  static let mutationsPerImage = 256
  /// Base images taken at most, spread over the groups, so the test stays well under a minute.
  static let maxImages = 24
  /// Images larger than this are skipped (fixtures are KB-sized; raw ones a few MiB).
  static let maxImageBytes = 8 << 20
  /// The whole test stops mutating after this long (and says so); it does not fail for that.
  static let budgetSeconds = 40.0
  static let secondsPerMutant = 5.0

  struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9e37_79b9_7f4a_7c15
      var z = state
      z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
      z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
      return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
  }

  /// Values that sit on the edges header checks have to get right.
  static func interesting(_ size: Int, _ rng: inout SplitMix64) -> UInt64 {
    let values: [UInt64] = [0, 1, 2, 9, 0x7f, 0x80, 0xff, 0x100, 0x1ff, 0x200, 0xfff, 0x1000, 0x7fff, 0x8000, 0xffff,
                            0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1_0000_0000, 1 << 40, 1 << 56,
                            UInt64(Int64.max), 1 << 63, UInt64.max, UInt64.max - 511, UInt64(size), UInt64(size) + 1,
                            UInt64(size) / 512, UInt64(size) &- 512]
    return rng.below(5) == 0 ? rng.next() : values[rng.below(values.count)]
  }

  static func mutate(_ base: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
    var b = base
    for _ in 0...rng.below(3) {
      guard !b.isEmpty else { break }
      let window = min(b.count, 64 << 10)
      let pos = rng.below(4) == 0 ? b.count - window + rng.below(window) : rng.below(window)
      switch rng.below(8) {
      case 0: b[pos] = UInt8(truncatingIfNeeded: rng.next())
      case 1: b[pos] ^= UInt8(1) << UInt8(rng.below(8))
      case 2, 3, 4, 5:
        let width = [2, 4, 8, 8][rng.below(4)]
        let at = pos & ~(width - 1)
        guard at + width <= b.count else { continue }
        let v = interesting(base.count, &rng)
        let bigEndian = rng.below(2) == 0
        for i in 0..<width {
          let shift = UInt64(8 * (bigEndian ? width - 1 - i : i))
          b[at + i] = UInt8(truncatingIfNeeded: v >> shift)
        }
      case 6: // a run of 0x00 or 0xff over a field or two
        let len = min(b.count - pos, 1 + rng.below(32))
        let fill: UInt8 = rng.below(2) == 0 ? 0 : 0xff
        for i in pos..<(pos + len) { b[i] = fill }
      default: // truncation
        b.removeLast(min(b.count, 1 + rng.below(max(1, b.count / 2))))
      }
    }
    return b
  }

  /// Generated images of every fixture group, a few per group, in a stable order.
  func baseImages() throws -> [URL] {
    var perGroup: [[URL]] = []
    for group in Fixtures.groups {
      let dir = try Fixtures.directory(group)
      let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
      let files = names.map { dir.appendingPathComponent($0) }.filter { url in
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil
        return size.map { $0 > 0 && $0 <= Self.maxImageBytes } ?? false
      }
      if !files.isEmpty { perGroup.append(files) }
    }
    if perGroup.isEmpty, let seeds = builtInSeeds() { perGroup = seeds.map { [$0] } }
    // Round-robin over the groups so every family is represented before any group gets more.
    var out: [URL] = []
    var i = 0
    while out.count < Self.maxImages, perGroup.contains(where: { i < $0.count }) {
      for g in perGroup where i < g.count && out.count < Self.maxImages { out.append(g[i]) }
      i += 1
    }
    return out
  }

  /// Without any fixture group, the fuzz targets' built-in seeds (made by `fuzz/seeds.sh` with qemu-img
  /// and friends) stand in, one image per format.
  func builtInSeeds() -> [URL]? {
    let dir = Fixtures.root.appendingPathComponent("generated/.fuzz-seeds")
    let script = FuzzExercise.repoRoot.appendingPathComponent("fuzz/seeds.sh")
    guard FileManager.default.fileExists(atPath: script.path) else { return nil }
    if !FileManager.default.fileExists(atPath: dir.appendingPathComponent(".done").path) {
      try? FileManager.default.removeItem(at: dir)
      guard Fixtures.run(["bash", script.path, dir.path]).0 == 0 else { return nil }
      _ = FileManager.default.createFile(atPath: dir.appendingPathComponent(".done").path, contents: Data())
    }
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    return names.map { dir.appendingPathComponent($0) }.filter { url in
      let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil
      return size.map { $0 > 0 && $0 <= Self.maxImageBytes } ?? false
    }
  }

  func testSeededMutations() throws {
    let bases = try baseImages()
    guard !bases.isEmpty else { throw XCTSkip("no fixture groups with generated images") }
    let env = ProcessInfo.processInfo.environment["IMGTOOL_MUTATION_SEED"]
    let seed = env.flatMap { UInt64($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: $0.hasPrefix("0x") ? 16 : 10) }
      ?? 0x1a2b_3c4d_5e6f_7081
    print("MutationFuzzTests: seed 0x\(String(seed, radix: 16)) (replay with IMGTOOL_MUTATION_SEED=0x\(String(seed, radix: 16))), \(bases.count) images x \(Self.mutationsPerImage) mutations")
    let start = Date()
    var total = 0
    var slowest = (label: "", seconds: 0.0)
    outer: for (index, url) in bases.enumerated() {
      let base = try Array(Data(contentsOf: url))
      // Each image has its own stream, so one image's cases replay without running the others.
      var rng = SplitMix64(state: seed ^ (UInt64(index) &* 0x9e37_79b9_7f4a_7c15))
      var outcomes: [String: Int] = [:]
      for m in 0..<Self.mutationsPerImage {
        if Date().timeIntervalSince(start) > Self.budgetSeconds {
          print("MutationFuzzTests: time budget of \(Self.budgetSeconds) s reached after \(total) mutants")
          break outer
        }
        let mutant = Self.mutate(base, &rng)
        let label = "\(url.lastPathComponent) mutant \(m) (seed 0x\(String(seed, radix: 16)))"
        let r = FuzzExercise.run(MemorySource(mutant, name: label), label: label)
        outcomes[r.format, default: 0] += 1
        if r.seconds > slowest.seconds { slowest = (label, r.seconds) }
        XCTAssertLessThan(r.seconds, Self.secondsPerMutant, "\(label) is too slow")
        total += 1
      }
      let summary = outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
      print("MutationFuzzTests: \(url.lastPathComponent): \(summary)")
    }
    print("MutationFuzzTests: \(total) mutants in \(String(format: "%.1f", Date().timeIntervalSince(start))) s; slowest \(slowest.label) \(String(format: "%.3f", slowest.seconds)) s")
  }
}
