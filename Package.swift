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
        .library(name: "ViTForgeData", targets: ["ViTForgeData"]),
        .library(name: "ViTForgeTrain", targets: ["ViTForgeTrain"]),
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
        // zlib, for gzipped IDX files (gzread also reads plain files).
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        // libpng and libjpeg-turbo (classic libjpeg API), for ImageFolder data sets.
        .systemLibrary(name: "CPNG", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", providers: [.apt(["libjpeg62-turbo-dev"])]),
        // PNG/JPEG decoding in C: both libraries report errors by longjmp, which Swift cannot catch.
        .target(name: "CImageDecode", dependencies: ["CPNG", "CJPEG"],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),
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
        // ViT config, timm parameter names, safetensors I/O, forward/backward on a Backend, MAC/parameter counts.
        .target(name: "ViTForgeModel", dependencies: ["ViTForgeDevice"]),
        // Data sets beside the model layer (neither imports the other): IDX files, ImageFolders (PNG/JPEG), class
        // subsets, validation splits, augmentation, image preparation, prefetching batches.
        .target(name: "ViTForgeData", dependencies: ["CZlib", "CImageDecode"]),
        // Losses (CE, KD), AdamW + schedules, the training loop, checkpoints and resume, progress lines.
        .target(name: "ViTForgeTrain", dependencies: ["ViTForgeModel", "ViTForgeData"]),
        // Channel spaces, dependency groups, importance, budgets, surgery and the pruning methods.
        .target(name: "ViTForgePrune", dependencies: ["ViTForgeTrain", "ViTForgeModel", "ViTForgeDevice"]),
        .executableTarget(name: "vitforge", dependencies: [
            "ViTForgeDevice",
            "ViTForgeModel",
            "ViTForgeData",
            "ViTForgeTrain",
            "ViTForgePrune",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "ViTForgeDeviceTests", dependencies: ["ViTForgeDevice", "vitforge"]),
        .testTarget(name: "ViTForgeModelTests", dependencies: ["ViTForgeModel"]),
        // CImageDecode's encoders write the tests' PNG/JPEG files.
        .testTarget(name: "ViTForgeDataTests", dependencies: ["ViTForgeData", "CImageDecode"]),
        // Runs the built `vitforge` binary as a subprocess (the dependency makes `swift build`/`swift test` build it).
        .testTarget(name: "vitforgeCLITests", dependencies: ["vitforge", "ViTForgeModel", "ViTForgeData"]),
        .testTarget(name: "ViTForgeTrainTests", dependencies: ["ViTForgeTrain"]),
        .testTarget(name: "ViTForgePruneTests",
                    dependencies: ["ViTForgePrune", "ViTForgeModel", "ViTForgeDevice", "ViTForgeData"]),
    ],
    swiftLanguageModes: [.v5]
)
