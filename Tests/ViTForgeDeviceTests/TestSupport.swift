#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ViTForgeDevice

// MARK: Backends under test

/// A backend as a test argument. Backends are not `Sendable`; Swift Testing wants its arguments to be. The CPU
/// backend keeps no mutable state of its own (OpenBLAS's thread count is process-wide and only affects speed), so
/// sharing it between concurrently running test cases is safe. A backend whose calls must not overlap (one OpenCL
/// queue) should serialise them itself, or its tests should get the `.serialized` trait.
struct BackendUnderTest: @unchecked Sendable, CustomTestStringConvertible {
    let backend: any Backend
    /// How the test report names it; defaults to the backend's own `name`.
    let label: String

    init(_ backend: any Backend, label: String? = nil) {
        self.backend = backend
        self.label = label ?? backend.name
    }

    var testDescription: String { label }
}

/// One instance of each available backend, built once (a `static let` is initialised lazily and exactly once) and
/// shared by every test, so that a device is opened and its kernels compiled once per test run.
enum TestBackends {
    /// THE place to add a backend: put one `BackendUnderTest` into `otherBackends` below and every operation row
    /// runs on it, and `backendsAgree` compares it with the CPU. For the OpenCL backend, something like:
    ///
    ///     let otherBackends = [(try? OpenCLBackend(device: …first PoCL device…)).map { BackendUnderTest($0) }]
    ///         .compactMap { $0 }
    ///
    /// (and CI sets `VITFORGE_EXPECT_OPENCL=1`, so that a device that fails to open fails the run instead of being
    /// silently left out).
    static let all: [BackendUnderTest] = {
        let cpuBackends = [
            BackendUnderTest(CPUBackend(gemm: .pinned(.openblas))),
            // The same backend with every loop split over the workers however small it is, so that the chunked
            // parallel code paths (uneven chunk boundaries at odd sizes, per-worker partial sums) meet the odd
            // sizes of the table instead of only the serial path.
            BackendUnderTest(CPUBackend(threads: nil, parallelThreshold: 0, gemm: .pinned(.openblas)),
                             label: "cpu, every loop split"),
        ]
        // Every other GEMM library the backend can use (`VITFORGE_GEMM`), on the split path too, so that the op
        // table runs against each of them (when installed: `oneDNNPresentWhenExpected` fails CI without it). The
        // two above pin OpenBLAS, whatever VITFORGE_GEMM says.
        let otherGemm = GemmLibrary.oneDNNProblem != nil ? [] : [
            BackendUnderTest(CPUBackend(threads: nil, parallelThreshold: 0, gemm: .pinned(.onednn)),
                             label: "cpu, oneDNN GEMM, every loop split"),
        ]
        // Further backends go here. The first OpenCL device (PoCL on a GPU-less machine); left out when there is
        // none or it fails to open, which `openCLPresentWhenExpected` turns into a failure when CI expects one.
        let first = (try? OpenCLRuntime.devices().first).flatMap { $0 }
        let openCL = first.flatMap { try? OpenCLBackend(device: $0) }
        var otherBackends: [BackendUnderTest] = [openCL.map { BackendUnderTest($0) }].compactMap { $0 }
        // The kernel variants the device type does not choose, forced: on PoCL (CI) the GPU-shaped kernels
        // (work-group per row, tiled attention) run every row of the table too, so they are checked without a GPU.
        if let openCL, let device = first {
            if let forced = try? OpenCLBackend(device: device, kernelShape: openCL.kernelShape.other) {
                otherBackends.append(BackendUnderTest(forced))
            }
        }
        return cpuBackends + otherGemm + otherBackends
    }()

    /// The CPU backend every other backend is compared with.
    static var cpu: any Backend { all[0].backend }

    /// Every backend that is not a CPU backend.
    static var others: [BackendUnderTest] { all.filter { $0.backend.kind != .cpu } }
}

