// swift-tools-version: 6.0
// libFuzzer harnesses for ViTForge's readers, in their own package so that neither `swift build` nor `swift test` of
// the product builds them (they need -sanitize=fuzzer,address on every module). Build and run with Fuzz/run.sh.
import PackageDescription

let package = Package(
    name: "ViTForgeFuzz",
    dependencies: [
        .package(name: "ViTForge", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The CLI's own sources (Sources/VitforgeCLI links to ../../Sources/vitforge), compiled as a library so the
        // flag harness can parse command lines exactly as `vitforge` does: its @main entry point is renamed, since
        // libFuzzer supplies `main`.
        .target(name: "VitforgeCLI", dependencies: [
            .product(name: "ViTForgeSupport", package: "ViTForge"),
            .product(name: "ViTForgeDevice", package: "ViTForge"),
            .product(name: "ViTForgeFormats", package: "ViTForge"),
            .product(name: "ViTForgeModel", package: "ViTForge"),
            .product(name: "ViTForgeData", package: "ViTForge"),
            .product(name: "ViTForgeTrain", package: "ViTForge"),
            .product(name: "ViTForgePrune", package: "ViTForge"),
            .product(name: "ViTForgeExport", package: "ViTForge"),
            .product(name: "ViTForgeRandom", package: "ViTForge"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: [.unsafeFlags(["-Xfrontend", "-entry-point-function-name",
                                         "-Xfrontend", "vitforge_main", "-enable-testing"])]),
        // Starts libFuzzer from the harnesses' own entry points.
        .target(name: "FuzzDriver"),
        // The file formats alone: no OpenCL, no BLAS.
        .executableTarget(name: "FuzzSafetensors", dependencies: [
            "FuzzDriver", .product(name: "ViTForgeFormats", package: "ViTForge"),
        ]),
        .executableTarget(name: "FuzzIDX", dependencies: [
            "FuzzDriver", .product(name: "ViTForgeData", package: "ViTForge"),
        ]),
        .executableTarget(name: "FuzzImage", dependencies: [
            "FuzzDriver", .product(name: "ViTForgeData", package: "ViTForge"),
        ]),
        .executableTarget(name: "FuzzFlags", dependencies: ["FuzzDriver", "VitforgeCLI"]),
    ],
    swiftLanguageModes: [.v5]
)
