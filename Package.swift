// swift-tools-version:6.0
// imgtool: inspect, check and (later) convert virtual-machine disk images.
// FormatProbe and imgtool import no Foundation module: start-up time is part of the product
// (a Foundation-linked binary loads ICU on every start and is ~2x slower than qemu-img info).
import PackageDescription

/// The C libraries are linked statically on Linux: loading libcrypto.so and four compression
/// libraries costs about a millisecond on every start. Their module maps ask for `-lcrypto` etc.
/// (autolinking, in every module that imports them directly or through FormatProbe); that is turned off and the same libraries are named between -Bstatic and
/// -Bdynamic instead, so the archives from the -dev packages are used. Set
/// IMGTOOL_DYNAMIC_C_LIBS=1 to link the shared libraries instead.
let cLibraries = ["crypto", "lz4", "zstd", "lzma", "z"]
let linkCLibrariesStatically = Context.environment["IMGTOOL_DYNAMIC_C_LIBS"] == nil
/// pkg-config would add the shared -l flags again; the static build uses the standard paths.
func pkgConfig(_ name: String) -> String? { linkCLibrariesStatically ? nil : name }
let staticCLibraries: (swift: [SwiftSetting], linker: [LinkerSetting]) = {
  guard linkCLibrariesStatically else { return ([], []) }
  let linux = BuildSettingCondition.when(platforms: [.linux])
  let noAutolink = cLibraries.flatMap { ["-Xfrontend", "-disable-autolink-library", "-Xfrontend", $0] }
  let link = ["-Xlinker", "-Bstatic"] + cLibraries.flatMap { ["-Xlinker", "-l\($0)"] } + ["-Xlinker", "-Bdynamic"]
  return ([.unsafeFlags(noAutolink, linux)], [.unsafeFlags(link, linux)])
}()

let package = Package(
  name: "imgtool",
  products: [
    .executable(name: "imgtool", targets: ["imgtool"]),
    .library(name: "FormatProbe", targets: ["FormatProbe"]),
    .library(name: "Converters", targets: ["Converters"]),
  ],
  targets: [
    // C libraries from Debian -dev packages; each has a module map and a shim header.
    .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: pkgConfig("zlib"), providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CLzma", path: "Sources/CLzma", pkgConfig: pkgConfig("liblzma"), providers: [.apt(["liblzma-dev"])]),
    .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: pkgConfig("libzstd"), providers: [.apt(["libzstd-dev"])]),
    .systemLibrary(name: "CLz4", path: "Sources/CLz4", pkgConfig: pkgConfig("liblz4"), providers: [.apt(["liblz4-dev"])]),
    .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: pkgConfig("libcrypto"), providers: [.apt(["libssl-dev"])]),
    .target(
      name: "FormatProbe",
      dependencies: ["CZlib", "CLzma", "CZstd", "CLz4", "CCrypto"],
      swiftSettings: staticCLibraries.swift,
      linkerSettings: staticCLibraries.linker
    ),
    .target(name: "Converters", dependencies: ["FormatProbe"], swiftSettings: staticCLibraries.swift),
    .executableTarget(name: "imgtool", dependencies: ["FormatProbe", "Converters"], swiftSettings: staticCLibraries.swift),
    .testTarget(name: "FormatProbeTests", dependencies: ["FormatProbe"], swiftSettings: staticCLibraries.swift),
    .testTarget(name: "imgtoolTests", dependencies: ["FormatProbe"], swiftSettings: staticCLibraries.swift),
  ]
)
