// swift-tools-version: 6.0
// ViTForge: fine-tune and structurally prune Vision Transformers on OpenCL GPUs, with a CPU backend.
// Layers (arrows point down only): vitforge (CLI) → ViTForgePrune → ViTForgeTrain → ViTForgeModel → ViTForgeDevice.
import PackageDescription

let package = Package(
    name: "ViTForge",
    products: [
        .executable(name: "vitforge", targets: ["vitforge"]),
        .library(name: "ViTForgeDevice", targets: ["ViTForgeDevice"]),
        .library(name: "ViTForgeModel", targets: ["ViTForgeModel"]),
        .library(name: "ViTForgePrune", targets: ["ViTForgePrune"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // OpenCL (ocl-icd) + CLBlast's C API.
        .systemLibrary(name: "COpenCL", pkgConfig: "OpenCL",
                       providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers", "libclblast-dev"])]),
        // CBLAS from OpenBLAS (pkg-config adds the openblas-pthread include folder).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // OpenCL C sources, embedded into the binary at build time.
        .target(name: "Kernels", path: "Kernels",
                exclude: ["README.md"],
                resources: [
                    .embedInCode("tensor.cl"),
                    .embedInCode("layernorm.cl"),
                    .embedInCode("softmax.cl"),
                    .embedInCode("mlp.cl"),
                    .embedInCode("loss.cl"),
                    .embedInCode("statistics.cl"),
                    .embedInCode("optimizer.cl"),
                    .embedInCode("svd.cl"),
                ]),
        .target(name: "ViTForgeDevice", dependencies: ["COpenCL", "CBLAS", "Kernels"]),
        // ViT config, timm parameter names, safetensors I/O, MAC/parameter counts (forward/backward come later).
        .target(name: "ViTForgeModel", dependencies: ["ViTForgeDevice"]),
        // Channel spaces, dependency groups, importance, budgets, surgery and the pruning methods.
        .target(name: "ViTForgePrune", dependencies: ["ViTForgeModel", "ViTForgeDevice"]),
        .executableTarget(name: "vitforge", dependencies: [
            "ViTForgeDevice", "ViTForgeModel", "ViTForgePrune",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "ViTForgeDeviceTests", dependencies: ["ViTForgeDevice", "vitforge"]),
        .testTarget(name: "ViTForgeModelTests", dependencies: ["ViTForgeModel"]),
        .testTarget(name: "ViTForgePruneTests", dependencies: ["ViTForgePrune", "ViTForgeModel", "ViTForgeDevice"]),
    ],
    swiftLanguageModes: [.v5]
)
