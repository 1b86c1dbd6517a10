// swift-tools-version: 6.0
// Benchmarks live in their own package so that neither `swift build` nor `swift test` of the product builds them.
// Run from the repository root:  swift run -c release --package-path Benchmarks gemm-bench (or op-bench)
import PackageDescription

let package = Package(
    name: "ViTForgeBenchmarks",
    dependencies: [.package(name: "ViTForge", path: "..")],
    targets: [
        .executableTarget(name: "gemm-bench", dependencies: [
            .product(name: "ViTForgeDevice", package: "ViTForge"),
            .product(name: "ViTForgeFormats", package: "ViTForge"),
            .product(name: "ViTForgeModel", package: "ViTForge"),
        ]),
        .executableTarget(name: "op-bench", dependencies: [
            .product(name: "ViTForgeDevice", package: "ViTForge"),
            .product(name: "ViTForgeSupport", package: "ViTForge"),
        ]),
        .executableTarget(name: "loader-bench", dependencies: [
            .product(name: "ViTForgeData", package: "ViTForge"),
        ]),
        .executableTarget(name: "kernel-timings", dependencies: [
            .product(name: "ViTForgeDevice", package: "ViTForge"),
        ]),
        .executableTarget(name: "preparation-timing", dependencies: [
            .product(name: "ViTForgeData", package: "ViTForge"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)
