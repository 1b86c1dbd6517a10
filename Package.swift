// swift-tools-version: 6.1
// ViTForge: fine-tune and structurally prune Vision Transformers on OpenCL GPUs, with a CPU backend.
// Layers (arrows point down only): vitforge (CLI) → ViTForgePrune → ViTForgeTrain → ViTForgeModel → ViTForgeDevice;
// ViTForgeFormats (model files) under ViTForgeModel and beside ViTForgeDevice, ViTForgeSupport (locks, fault hooks,
// the qkv layout) under both; ViTForgeData beside ViTForgeModel, and ViTForgeRandom under both. With the `MPI` trait, ViTForgeMPI (above
// ViTForgeTrain) gives the CLI data-parallel runs under `mpirun`.
import PackageDescription
import Foundation

/// Swift flags for ViTForgeDevice, whose CPU loops (the SIMD8 exp/GELU/softmax, LayerNorm, column sums, AdamW) are
/// written for 256-bit vectors. Swift has no per-function target attributes, and the default x86-64 target is SSE2:
/// every SIMD8 op became two 4-lane halves and every `replacing(with:where:)` an and/andn/or blend, and vectorExp
/// alone took 9% of an fm-vit-c training step (perf). When the building machine has AVX2 + FMA (every machine this
/// project builds and runs on; the binary is built where it runs), the target is compiled for Haswell's feature set.
/// Measured with the whole binary built that way: fm-vit-c batch-128 train step 507 → 439 ms median, interleaved
/// runs on the shared 2-core EPYC (Zen 3). Swift does not contract a·b + c into an FMA by itself, so the
/// arithmetic of the loops stays the same operations; the fixture and float64 tests pass with it.
/// `VITFORGE_PORTABLE_BUILD=1` builds for baseline x86-64 instead (a binary for an older machine).
let deviceSwiftSettings: [SwiftSetting] = {
    #if arch(x86_64) && os(Linux)
    if ProcessInfo.processInfo.environment["VITFORGE_PORTABLE_BUILD"] == "1" { return [] }
    guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flagsLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
    else { return [] }
    let flags = Set(flagsLine.split(separator: " ").map(String.init))
    // The features `-target-cpu haswell` assumes.
    let haswell = ["avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "abm", "popcnt", "sse4_2"]
    return haswell.allSatisfy(flags.contains) ? [.unsafeFlags(["-target-cpu", "haswell"])] : []
    #else
    return []
    #endif
}()

/// The package trait that builds the data-parallel CLI (`swift build --traits MPI`, needs Open MPI:
/// `libopenmpi-dev openmpi-bin`). Without it nothing needs MPI and the CLI is a single process.
let mpi: Set<String> = ["MPI"]

let package = Package(
    name: "ViTForge",
    products: [
        .executable(name: "vitforge", targets: ["vitforge"]),
        .library(name: "ViTForgeRandom", targets: ["ViTForgeRandom"]),
        .library(name: "ViTForgeSupport", targets: ["ViTForgeSupport"]),
        .library(name: "ViTForgeDevice", targets: ["ViTForgeDevice"]),
        .library(name: "ViTForgeFormats", targets: ["ViTForgeFormats"]),
        .library(name: "ViTForgeModel", targets: ["ViTForgeModel"]),
        .library(name: "ViTForgeData", targets: ["ViTForgeData"]),
        .library(name: "ViTForgeTrain", targets: ["ViTForgeTrain"]),
        .library(name: "ViTForgePrune", targets: ["ViTForgePrune"]),
        .library(name: "ViTForgeExport", targets: ["ViTForgeExport"]),
    ],
    traits: [
        .trait(name: "MPI", description: "Data-parallel train/prune under mpirun (Open MPI: libopenmpi-dev)."),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The ONNX exporter's message types (generated once from Sources/ViTForgeExport/Proto; the plugin is not
        // built here).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // OpenCL (ocl-icd) + CLBlast's C API.
        .systemLibrary(name: "COpenCL", pkgConfig: "OpenCL",
                       providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers", "libclblast-dev"])]),
        // CBLAS from OpenBLAS (pkg-config adds the openblas-pthread include folder).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // LAPACK (symmetric eigen-decomposition, SVD) from the same OpenBLAS: the Fortran symbols, declared in a shim.
        .systemLibrary(name: "CLAPACK", providers: [.apt(["libopenblas-dev"])]),
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
                    .embedInCode("masks.cl"),
                    .embedInCode("eigen.cl"),
                    .embedInCode("attention.cl"),
                    .embedInCode("bookkeeping.cl"),
                ]),
        // The register-only FMA loops behind `bench --peak`, one function per instruction set (picked at run time).
        .target(name: "CFMAPeak"),
        // What both the device layer and the file formats need, neither importing the other: the process-wide lock,
        // the fault hooks of the reliability tests, and where a head's q, k and v sit in the fused qkv projection.
        .target(name: "ViTForgeSupport"),
        // oneDNN's sgemm, one of the CPU backend's GEMM libraries (`VITFORGE_GEMM`), single-threaded per caller;
        // loaded with dlopen, so that the binary also runs (on OpenBLAS) where oneDNN is not installed.
        .target(name: "CGemmDNNL", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "ViTForgeDevice",
                dependencies: ["ViTForgeSupport", "COpenCL", "CBLAS", "CLAPACK", "Kernels", "CFMAPeak", "CGemmDNNL"],
                swiftSettings: deviceSwiftSettings),
        // The one seeded generator (SplitMix64) behind everything reproducible from a seed: initial weights, data
        // order and augmentation, the training generator's seeding, random pruning, bench inputs. Its own target
        // because Model and Data both need it and neither may import the other.
        .target(name: "ViTForgeRandom"),
        // Pillow's antialiased separable resampling weights (bicubic, bilinear, nearest): images (Data) and position
        // embeddings (Model) resample alike. Its own target for the same reason as ViTForgeRandom.
        .target(name: "ViTForgeResampling"),
        // Model files without the device layer (the fuzz harness of safetensors builds it without OpenCL or BLAS):
        // ViT config and its inference from tensor shapes, timm parameter names, weights on the host, safetensors
        // read/write, Hugging Face import, preprocessing recipes, atomic writes and the file errors.
        .target(name: "ViTForgeFormats", dependencies: ["ViTForgeSupport", "ViTForgeRandom"]),
        // Forward/backward of a ViT on a Backend, initialisation, position-embedding resampling, MAC counts.
        .target(name: "ViTForgeModel", dependencies: ["ViTForgeFormats", "ViTForgeDevice", "ViTForgeSupport",
                                                     "ViTForgeRandom", "ViTForgeResampling"]),
        // Data sets beside the model layer (neither imports the other): IDX files, ImageFolders (PNG/JPEG), class
        // subsets, validation splits, augmentation, image preparation, prefetching batches.
        .target(name: "ViTForgeData", dependencies: ["CZlib", "CImageDecode", "ViTForgeRandom", "ViTForgeResampling"]),
        // Losses (CE, KD), AdamW + schedules, the training loop, checkpoints and resume, progress lines.
        .target(name: "ViTForgeTrain", dependencies: ["ViTForgeModel", "ViTForgeFormats", "ViTForgeDevice",
                                                     "ViTForgeSupport", "ViTForgeData", "ViTForgeRandom"]),
        // Channel spaces, dependency groups, importance, budgets, surgery and the pruning methods, each with its
        // option group (swift-argument-parser), so that a method is one folder plus one registry line.
        .target(name: "ViTForgePrune", dependencies: [
                    "ViTForgeTrain", "ViTForgeModel", "ViTForgeFormats", "ViTForgeData", "ViTForgeDevice",
                    "ViTForgeSupport", "ViTForgeRandom",
                    .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Open MPI's headers and library, through pkg-config (used only with the MPI trait).
        .systemLibrary(name: "COpenMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // Plain-C wrappers of the MPI calls a data-parallel run makes (MPI_COMM_WORLD etc. are macros). Without the
        // trait it compiles to stubs that report "built without MPI", so a plain build needs no mpi.h.
        .target(name: "CMPI",
                dependencies: [.target(name: "COpenMPI", condition: .when(traits: mpi))],
                cSettings: [.define("VITFORGE_MPI", .when(traits: mpi))]),
        // `Collective` over MPI_COMM_WORLD, and the CLI's start-up/shut-down of MPI.
        .target(name: "ViTForgeMPI", dependencies: ["CMPI", "ViTForgeTrain"]),
        // Model export: ONNX graphs of any model ViTForge loads, written with swift-protobuf.
        .target(name: "ViTForgeExport", dependencies: [
                    "ViTForgeModel", "ViTForgeFormats", "ViTForgeDevice", "ViTForgeSupport",
                    .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["Proto/onnx_subset.proto", "Proto/generate.sh", "Proto/check_against_onnx.py"]),
        .executableTarget(name: "vitforge", dependencies: [
            "ViTForgeRandom",
            "ViTForgeResampling",
            "ViTForgeSupport",
            "ViTForgeDevice",
            "ViTForgeFormats",
            "ViTForgeModel",
            "ViTForgeData",
            "ViTForgeTrain",
            "ViTForgePrune",
            .target(name: "ViTForgeMPI", condition: .when(traits: mpi)),
            "ViTForgeExport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // What every test target may share, below the device layer (so that the device tests depend on the device
        // and nothing above it): the fixtures folder, temporary folders, and the seeded random values (SplitMix64
        // behind RandomNumberGenerator) of the op table and the test support.
        .target(name: "ViTForgeTestBasics", dependencies: ["ViTForgeRandom"], path: "Tests/ViTForgeTestBasics"),
        // The op table: every Backend operation at odd sizes against float64 references, as a library so that
        // `BackendOpTests` and the `op-table` executable (which runs where there is no Swift test runner: a lent GPU
        // machine, see Benchmarks/gpu) run the same rows.
        .target(name: "ViTForgeOpTable", dependencies: ["ViTForgeDevice", "ViTForgeSupport", "ViTForgeTestBasics"],
                path: "Tests/ViTForgeOpTable"),
        .executableTarget(name: "op-table", dependencies: ["ViTForgeOpTable", "ViTForgeDevice"],
                          path: "Tests/op-table"),
        // What the test targets above the device layer share (test targets cannot import each other): the float64
        // reference ViT, random weights, and threads standing in for the ranks of a data-parallel run.
        .target(name: "ViTForgeTestSupport", dependencies: ["ViTForgeModel", "ViTForgeFormats", "ViTForgeTrain",
                                                            "ViTForgeTestBasics"],
                path: "Tests/ViTForgeTestSupport"),
        // CFMAPeak: FMAPeakTests run each peak loop and check the FLOPs it counts against the work it does.
        .testTarget(name: "ViTForgeDeviceTests", dependencies: ["ViTForgeDevice", "Kernels", "ViTForgeOpTable",
                                                               "ViTForgeTestBasics", "CFMAPeak"]),
        .testTarget(name: "ViTForgeModelTests", dependencies: ["ViTForgeModel", "ViTForgeFormats", "ViTForgeDevice",
                                                              "ViTForgeSupport", "ViTForgeRandom",
                                                              "ViTForgeTestBasics", "ViTForgeTestSupport"]),
        // CImageDecode's encoders write the tests' PNG/JPEG files.
        .testTarget(name: "ViTForgeDataTests", dependencies: ["ViTForgeData", "ViTForgeResampling", "CImageDecode"]),
        // Runs the built `vitforge` binary as a subprocess (the dependency makes `swift build`/`swift test` build it).
        // CImageDecode's encoders write the image folders of the journey tests.
        .testTarget(name: "vitforgeCLITests", dependencies: ["vitforge", "ViTForgeModel", "ViTForgeFormats",
                                                            "ViTForgeDevice", "ViTForgeData", "ViTForgePrune",
                                                            "ViTForgeTestBasics", "CImageDecode"]),
        .testTarget(name: "ViTForgeTrainTests", dependencies: ["ViTForgeTrain", "ViTForgeModel", "ViTForgeFormats",
                                                              "ViTForgeDevice", "ViTForgeTestBasics",
                                                              "ViTForgeTestSupport"]),
        .testTarget(name: "ViTForgeExportTests", dependencies: ["ViTForgeExport", "ViTForgeModel", "ViTForgeFormats",
                                                               "ViTForgeTestBasics", "ViTForgeTestSupport"]),
        .testTarget(name: "ViTForgePruneTests",
                    dependencies: ["ViTForgePrune", "ViTForgeTrain", "ViTForgeModel", "ViTForgeFormats",
                                   "ViTForgeDevice", "ViTForgeSupport", "ViTForgeData", "ViTForgeTestBasics",
                                   "ViTForgeTestSupport",
                                   .product(name: "ArgumentParser", package: "swift-argument-parser")]),
    ],
    swiftLanguageModes: [.v5]
)
