// swift-tools-version:6.0
// imgtool: inspect, check and (later) convert virtual-machine disk images.
// FormatProbe and imgtool import no Foundation module: start-up time is part of the product
// (a Foundation-linked binary loads ICU on every start and is ~2x slower than qemu-img info).
import PackageDescription

let package = Package(
  name: "imgtool",
  products: [
    .executable(name: "imgtool", targets: ["imgtool"]),
    .library(name: "FormatProbe", targets: ["FormatProbe"]),
    .library(name: "Converters", targets: ["Converters"]),
  ],
  targets: [
    // C libraries from Debian -dev packages; each has a module map and a shim header.
    .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CLzma", path: "Sources/CLzma", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
    .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
    .systemLibrary(name: "CLz4", path: "Sources/CLz4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
    .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
    .target(
      name: "FormatProbe",
      dependencies: ["CZlib", "CLzma", "CZstd", "CLz4", "CCrypto"]
    ),
    .target(name: "Converters", dependencies: ["FormatProbe"]),
    .executableTarget(name: "imgtool", dependencies: ["FormatProbe", "Converters"]),
    .testTarget(name: "FormatProbeTests", dependencies: ["FormatProbe"]),
    .testTarget(name: "imgtoolTests", dependencies: ["FormatProbe"]),
  ]
)
