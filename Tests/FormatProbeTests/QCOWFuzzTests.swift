import Foundation
import XCTest
@testable import FormatProbe

/// Bounded, deterministic mutation runs over real and built images of the family: every mutant
/// must give an answer or an ImageError, never a trap, and the deep checks must finish.
final class QCOWFuzzTests: XCTestCase {
  /// xorshift64*: deterministic, so a failure reproduces.
  struct RNG {
    var state: UInt64
    mutating func next() -> UInt64 {
      state ^= state >> 12
      state ^= state << 25
      state ^= state >> 27
      return state &* 2_685_821_657_736_338_717
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
  }

  /// Interesting values for header fields: zero, all ones, sign bits, near-powers of two.
  static let specials: [UInt64] = [0, 1, 7, 8, 9, 21, 22, 63, 64, 511, 512, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000,
                                   0xffff_ffff, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, UInt64.max]

  static func mutate(_ base: [UInt8], _ rng: inout RNG, hotEnd: Int) -> [UInt8] {
    var b = base
    for _ in 0..<(1 + rng.below(4)) {
      let at = rng.below(min(b.count, hotEnd))
      switch rng.below(4) {
      case 0:
        b[at] ^= UInt8(1 << rng.below(8))
      case 1:
        b[at] = UInt8(truncatingIfNeeded: rng.next())
      case 2:
        // A big-endian special value over 4 or 8 bytes at an 4-aligned offset.
        let width = rng.below(2) == 0 ? 4 : 8
        let o = (at / 4) * 4
        let v = specials[rng.below(specials.count)]
        for i in 0..<width where o + i < b.count { b[o + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * (width - 1 - i))) }
      default:
        b = Array(b.prefix(max(8, rng.below(b.count))))
      }
    }
    return b
  }

  func run(_ name: String, _ base: [UInt8], iterations: Int, hotEnd: Int, seed: UInt64) {
    var rng = RNG(state: seed)
    var answered = 0
    for _ in 0..<iterations {
      let bytes = Self.mutate(base, &rng, hotEnd: hotEnd)
      guard let ctx = try? ProbeContext(source: MemorySource(bytes, name: name)) else { continue }
      for probe: any FormatProbe.Type in [QCOW2Probe.self, QCOWProbe.self, QEDProbe.self, LUKSProbe.self] {
        if let info = try? probe.probe(ctx) {
          answered += 1
          if let deep = probe as? any DeepCheckable.Type { _ = deep.deepCheck(ctx, info) }
        }
      }
    }
    XCTAssertGreaterThan(answered, 0, name)
  }

  func testBuiltQcow2() {
    run("built", QCOWCheckHostileTests.withData().build(), iterations: 3000, hotEnd: 3 * 512, seed: 1)
    run("built-l2", QCOWCheckHostileTests.withData().build(), iterations: 2000, hotEnd: 6 * 512, seed: 2)
  }

  func testFixtures() throws {
    for (file, seed) in [("c512.qcow2", 3), ("v2.qcow2", 4), ("el2.qcow2", 5), ("snaps.qcow2", 6), ("bitmap.qcow2", 7),
                         ("compressed.qcow2", 8), ("legacy.qcow", 9), ("v.qed", 10), ("luks1.img", 11)] as [(String, UInt64)] {
      var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.path("qcow", file))))
      if bytes.count > 2 << 20 { bytes = Array(bytes.prefix(2 << 20)) }
      run(file, bytes, iterations: 300, hotEnd: min(bytes.count, 4096), seed: seed)
    }
  }

  func testLUKS2() throws {
    var bytes = QCOWFamilyBuilders.luks2(json: QCOWFamilyBuilders.luks2JSON)
    run("luks2", bytes, iterations: 1500, hotEnd: 4096 + QCOWFamilyBuilders.luks2JSON.utf8.count, seed: 12)
    bytes = QCOWFamilyBuilders.luks1()
    run("luks1", bytes, iterations: 1500, hotEnd: 592, seed: 13)
  }
}
