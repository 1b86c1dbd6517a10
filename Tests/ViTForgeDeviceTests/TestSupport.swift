#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ViTForgeDevice
import ViTForgeTestBasics

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
            BackendUnderTest(CPUBackend()),
            // The same backend with every loop split over the workers however small it is, so that the chunked
            // parallel code paths (uneven chunk boundaries at odd sizes, per-worker partial sums) meet the odd
            // sizes of the table instead of only the serial path.
            BackendUnderTest(CPUBackend(threads: nil, parallelThreshold: 0), label: "cpu, every loop split"),
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
        return cpuBackends + otherBackends
    }()

    /// The CPU backend every other backend is compared with.
    static var cpu: any Backend { all[0].backend }

    /// Every backend that is not a CPU backend.
    static var others: [BackendUnderTest] { all.filter { $0.backend.kind != .cpu } }
}

// MARK: Random inputs

/// The seed of every random input: fixed, so a failure reproduces, and overridable with `VITFORGE_TEST_SEED=<n>`
/// to run the same tests on other inputs.
enum TestSeed {
    static let base: UInt64 = {
        if let text = getenv("VITFORGE_TEST_SEED"), let seed = UInt64(String(cString: text)) { return seed }
        return 0x5EED_0F_7F0E
    }()

    /// A seed of its own for each row (FNV-1a of its name), so adding a row does not change the others' inputs.
    static func forName(_ name: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
        }
        return base ^ hash
    }
}

// MARK: Moving values between the tests and a backend

extension Backend {
    /// A buffer holding `values` as Float (they are Float-exact when made by `SeededGenerator.values`).
    func buffer(_ values: [Double]) throws -> Buffer {
        try makeBuffer(values.map { Float($0) })
    }

    /// A buffer holding `indices` as Int32.
    func indexBuffer(_ indices: [Int]) throws -> Buffer {
        try makeBuffer(indices.map { Int32($0) })
    }

    /// The first `count` elements (all by default), as Double.
    func values(_ buffer: Buffer, count: Int? = nil) throws -> [Double] {
        try read(buffer, count: count).map { Double($0) }
    }

    /// The float64 values stored in the first `doubles · 2` elements (column-statistics state).
    func float64Values(_ buffer: Buffer, doubles: Int) throws -> [Double] {
        let floats = try read(buffer, count: 2 * doubles)
        return floats.withUnsafeBytes { bytes in (0 ..< doubles).map { bytes.load(fromByteOffset: 8 * $0, as: Double.self) } }
    }
}

// MARK: Comparing

/// The error measure of every comparison: `max_i |got_i − expected_i| / max_i |expected_i|` (the max-norm error
/// relative to the output's largest magnitude). It is scale-free, so outputs that are all small (probabilities,
/// gradients scaled by 1/rows) are held to the same standard as large ones; and, unlike an element-wise relative
/// error, it does not blow up on elements that are near zero only through cancellation (layerNorm's dX).
/// A NaN or an infinity is an infinite error, unless the expectation holds the same non-finite value there (rows
/// that check how −Inf logits or bad labels propagate); the scale is taken over the finite values. A length
/// mismatch is an infinite error. An all-zero expectation compares absolutely.
/// `relativeTo` gives the scale when it is not `expected` itself (two backends compared at the reference's scale).
func normalizedError(_ got: [Double], _ expected: [Double], relativeTo scale: [Double]? = nil)
    -> (error: Double, worstIndex: Int)
{
    guard got.count == expected.count else { return (.infinity, -1) }
    var largest = 0.0
    for value in scale ?? expected where value.isFinite { largest = max(largest, abs(value)) }
    var worst = 0.0
    var worstIndex = 0
    for i in 0 ..< got.count {
        if !got[i].isFinite || !expected[i].isFinite {
            let same = got[i].isNaN ? expected[i].isNaN : got[i] == expected[i]
            if same { continue }
            return (.infinity, i)
        }
        let difference = abs(got[i] - expected[i])
        if difference > worst {
            worst = difference
            worstIndex = i
        }
    }
    return (largest > 0 ? worst / largest : worst, worstIndex)
}

/// `a[i] + b[i]`: a gradient's prefill plus the contribution the backward operation must accumulate onto it.
func elementwiseSum(_ a: [Double], _ b: [Double]) -> [Double] {
    zip(a, b).map { $0 + $1 }
}

/// `Σ a[i]·b[i]`: the scalar loss `Σ dOut·forward(x)` whose gradient a backward operation computes.
func dot(_ a: [Double], _ b: [Double]) -> Double {
    var total = 0.0
    for i in 0 ..< a.count { total += a[i] * b[i] }
    return total
}

/// Values rounded to Float precision: what a backend holds after a forward pass saved them.
func roundedToFloat(_ values: [Double]) -> [Double] {
    values.map { Double(Float($0)) }
}
