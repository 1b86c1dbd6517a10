#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ViTForgeDevice
import ViTForgeTestBasics

// Every operation of `Backend`, on every backend in `TestBackends.all`, against the float64 `Reference`
// (after ggml's test-backend-ops). To cover a new operation or a new shape, add a row to `OpCase.table`:
// a name, and a function that makes fresh random inputs from the generator it is given, computes the expected
// outputs with `Reference`, and returns how to run the operation on a backend (`PreparedOp`). Backward operations
// also return `GradientCheck`s, which prove the reference itself against finite differences.

/// Tolerances on `normalizedError` (the max-norm error relative to the output's largest magnitude; see there why).
/// ε₃₂ = 2⁻²⁴ ≈ 6e-8 is float32's unit roundoff.
enum Tolerance {
    /// Data movement with no arithmetic, and single exact multiplications (masks of 0, ½, 1): bit-exact.
    static let exact = 0.0
    /// A few float32 roundings per element, and libm's erff/expf (≤ 2 ulp): ~10 ε₃₂, with headroom.
    static let elementwise = 1e-6
    /// Sums over a row (softmax, layerNorm, losses) or over a GEMM's k ≤ 197 in float32: the error grows like
    /// √k·ε₃₂ (k·ε₃₂ ≈ 1.2e-5 at worst, against outputs of size ≈ √k), so 1e-5 passes any sound float32
    /// implementation while a wrong index, transpose, offset or missing term gives errors of order 1.
    static let reduction = 1e-5
    /// Values the protocol promises to accumulate in float64 (sum, sumOfSquares, the column-statistics state):
    /// far below what a float32 accumulation of 10⁵ terms reaches (≈ 1e-6 even pairwise), so it proves float64.
    static let float64 = 1e-10
    /// The reference's backward against central differences (h = 1e-6) of its forward, both float64: truncation
    /// h²·f‴ ≈ 1e-12 plus rounding ε₆₄·|L|/h ≈ 1e-9 for the losses used here.
    static let finiteDifference = 1e-6
    /// Two backends each within `t` of the reference agree within 2t (relative to the reference's scale).
    static func betweenBackends(_ t: Double) -> Double { 2 * t }
}

/// One row of the table.
struct OpCase: Sendable, CustomTestStringConvertible {
    let name: String
    let prepare: @Sendable (inout SeededGenerator) throws -> PreparedOp

    init(_ name: String, _ prepare: @escaping @Sendable (inout SeededGenerator) throws -> PreparedOp) {
        self.name = name
        self.prepare = prepare
    }

    var testDescription: String { name }
    var seed: UInt64 { TestSeed.forName(name) }

    /// Fresh inputs for this row, from its own seed.
    func prepared() throws -> PreparedOp {
        var generator = SeededGenerator(seed: seed)
        return try prepare(&generator)
    }
}

/// One row with its inputs made: what it should produce, and how to produce it on a backend.
struct PreparedOp {
    /// The outputs, in the order `run` returns them, with the reference's values and the tolerance of each.
    var expected: [ExpectedOutput]
    /// Uploads the inputs to `backend`, runs the operation, downloads the outputs.
    var run: (any Backend) throws -> [[Double]]
    /// For backward operations: each gradient of the reference against finite differences.
    var gradientChecks: [GradientCheck] = []
}

struct ExpectedOutput {
    var name: String
    var values: [Double]
    var tolerance: Double

    init(_ name: String, _ values: [Double], _ tolerance: Double) {
        self.name = name
        self.values = values
        self.tolerance = tolerance
    }
}

/// `analytic` should be the gradient of `loss` at `input`.
struct GradientCheck {
    var name: String
    var input: [Double]
    var analytic: [Double]
    var loss: ([Double]) -> Double
}

// MARK: The tests

@Suite("Backend operations")
struct BackendOpTests {
    @Test("operation matches the float64 reference", arguments: TestBackends.all, OpCase.table)
    func matchesReference(backend: BackendUnderTest, row: OpCase) throws {
        let op = try row.prepared()
        let outputs = try op.run(backend.backend)
        try #require(outputs.count == op.expected.count, "\(row.name): run returned \(outputs.count) outputs")
        for (got, expected) in zip(outputs, op.expected) {
            let (error, worst) = normalizedError(got, expected.values)
            #expect(error <= expected.tolerance, """
                \(row.name) on \(backend.label): \(expected.name) normalised error \(error) > \(expected.tolerance) \
                (index \(worst): got \(got.indices.contains(worst) ? got[worst] : .nan), \
                expected \(expected.values.indices.contains(worst) ? expected.values[worst] : .nan); \
                seed \(row.seed))
                """)
        }
    }

    @Test("reference backward matches finite differences of the reference forward",
          arguments: OpCase.table)
    func referenceGradients(row: OpCase) throws {
        let op = try row.prepared()
        var generator = SeededGenerator(seed: row.seed ^ 0xFD)
        for check in op.gradientChecks {
            try #require(check.analytic.count == check.input.count, "\(row.name): \(check.name) has the wrong size")
            // A sample of coordinates keeps this fast in debug builds; every one is a full forward pass.
            let coordinates = generator.distinctIndices(min(16, check.input.count), below: check.input.count)
            let h = 1e-6
            var largest = 0.0
            for value in check.analytic { largest = max(largest, abs(value)) }
            var worst = 0.0
            for i in coordinates {
                var plus = check.input
                var minus = check.input
                plus[i] += h
                minus[i] -= h
                let numeric = (check.loss(plus) - check.loss(minus)) / (2 * h)
                worst = max(worst, abs(numeric - check.analytic[i]))
            }
            #expect(largest > 0, "\(row.name): \(check.name) is all zero, which proves nothing")
            let error = worst / max(largest, .leastNormalMagnitude)
            #expect(error <= Tolerance.finiteDifference, """
                \(row.name): reference \(check.name) differs from finite differences by \(error) (seed \(row.seed))
                """)
        }
    }

    // With only CPU backends there is nothing to compare: the argument list is empty and the trait says why.
    @Test("other backends agree with the CPU backend on the same inputs",
          .enabled(if: !TestBackends.others.isEmpty, "only the CPU backend is available"),
          arguments: TestBackends.others, OpCase.table)
    func backendsAgree(other: BackendUnderTest, row: OpCase) throws {
        let op = try row.prepared()
        let onCPU = try op.run(TestBackends.cpu)
        let onOther = try op.run(other.backend)
        for ((cpuValues, otherValues), expected) in zip(zip(onCPU, onOther), op.expected) {
            // Relative to the reference's scale, the same measure as in `matchesReference`.
            let (error, worst) = normalizedError(otherValues, cpuValues, relativeTo: expected.values)
            let tolerance = Tolerance.betweenBackends(expected.tolerance)
            #expect(error <= tolerance, """
                \(row.name): \(other.label) differs from the CPU in \(expected.name) by \(error) > \(tolerance) \
                (index \(worst); seed \(row.seed))
                """)
        }
    }

    @Test("sizes, offsets and indices outside the buffers throw invalidArgument", arguments: TestBackends.all)
    func invalidArgumentsThrow(backend: BackendUnderTest) throws {
        let device = backend.backend
        let small = try device.zeros(37)
        let large = try device.zeros(13 * 37)
        let labels = try device.makeBuffer([Int32(0), 37])
        let outOfRange = try device.makeBuffer([Int32(3), -1])
        var tooSmallC = GemmSpec(m: 13, n: 37, k: 1)
        tooSmallC.offsetC = 1
        var shortLda = GemmSpec(m: 13, n: 1, k: 7)
        shortLda.lda = 6
        var strideTooFar = GemmSpec(m: 1, n: 1, k: 13)
        strideTooFar.strideB = 13
        strideTooFar.batch = 3
        var calls: [(String, () throws -> Void)] = [
            ("gemm, C one element short", { try device.gemm(tooSmallC, a: large, b: large, c: large) }),
            ("gemm, lda shorter than a row of A", { try device.gemm(shortLda, a: large, b: large, c: large) }),
            ("gemmStridedBatched, B's stride past its end",
             { try device.gemmStridedBatched(strideTooFar, a: large, b: small, c: large) }),
            ("upload past the end", { try device.write([Float](repeating: 1, count: 7), to: small, offset: 31) }),
            ("copy past the end of dst", { try device.copy(large, srcOffset: 0, to: small, dstOffset: 1, count: 37) }),
            ("fill at a negative offset", { try device.fill(small, value: 0, offset: -1, count: 3) }),
            ("addBias with rows × cols larger than x", { try device.addBias(small, bias: small, rows: 2, cols: 37) }),
            ("layerNormForward with negative rows", {
                try device.layerNormForward(x: small, gamma: small, beta: small, out: small, mean: small, rstd: small,
                                            rows: -1, cols: 37, eps: 1e-6)
            }),
        ]
        // The values inside index and label buffers are checked where they are host memory. On a device they are
        // device memory, and checking them would cost a download per call, so the OpenCL kernels bound-check each
        // index instead (an out-of-range gather reads NaN, scatterAdd skips it) — see OpenCLBackendTests.
        if device.kind == .cpu {
            calls += [
                ("crossEntropyForward with a label equal to classes", {
                    try device.crossEntropyForward(logits: large, labels: labels, probs: large, losses: small, rows: 2,
                                                   classes: 37, smoothing: 0)
                }),
                ("gather with a negative index", { try device.gather(src: small, indices: outOfRange, dst: small, count: 2) }),
                ("scatterAdd with an index past dst", {
                    try device.scatterAdd(src: small, indices: labels, dst: small, count: 2)
                }),
            ]
        }
        for (what, call) in calls {
            do {
                try call()
                Issue.record("\(what): did not throw on \(backend.label)")
            } catch let error as BackendError {
                guard case .invalidArgument = error else {
                    Issue.record("\(what): threw \(error) instead of invalidArgument on \(backend.label)")
                    continue
                }
            }
        }
    }

    @Test("the OpenCL backend is present when CI expects it (VITFORGE_EXPECT_OPENCL=1)",
          .enabled(if: getenv("VITFORGE_EXPECT_OPENCL").map { String(cString: $0) == "1" } ?? false,
                   "VITFORGE_EXPECT_OPENCL is not 1"))
    func openCLPresentWhenExpected() {
        #expect(TestBackends.all.contains { $0.backend.kind == .openCL },
                "VITFORGE_EXPECT_OPENCL=1 but TestBackends.all has no OpenCL backend (no device, or it failed to open)")
    }
}
