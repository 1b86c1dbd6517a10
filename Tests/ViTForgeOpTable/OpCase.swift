#if canImport(Glibc)
import Glibc
#endif
import ViTForgeDevice
import ViTForgeTestBasics

// The op table's row type and its comparison: every operation of `Backend`, at odd sizes, with fresh random inputs,
// against the float64 `Reference` (after ggml's test-backend-ops). A library of its own so that the XCTest-free
// `op-table` executable (which runs on machines without Swift, e.g. a lent GPU machine) and `BackendOpTests` run the
// very same rows with the very same references and tolerances. To cover a new operation or a new shape, add a row
// to `OpCase.table`: a name, and a function that makes fresh random inputs from the generator it is given, computes
// the expected outputs with `Reference`, and returns how to run the operation on a backend (`PreparedOp`). Backward
// operations also return `GradientCheck`s, which prove the reference itself against finite differences.

/// Tolerances on `normalizedError` (the max-norm error relative to the output's largest magnitude; see there why).
/// ε₃₂ = 2⁻²⁴ ≈ 6e-8 is float32's unit roundoff.
public enum Tolerance {
    /// Data movement with no arithmetic, and single exact multiplications (masks of 0, ½, 1): bit-exact.
    public static let exact = 0.0
    /// A few float32 roundings per element, and libm's erff/expf (≤ 2 ulp): ~10 ε₃₂, with headroom.
    public static let elementwise = 1e-6
    /// Sums over a row (softmax, layerNorm, losses) or over a GEMM's k ≤ 197 in float32: the error grows like
    /// √k·ε₃₂ (k·ε₃₂ ≈ 1.2e-5 at worst, against outputs of size ≈ √k), so 1e-5 passes any sound float32
    /// implementation while a wrong index, transpose, offset or missing term gives errors of order 1.
    public static let reduction = 1e-5
    /// Values the protocol promises to accumulate in float64 (sum, sumOfSquares, the column-statistics state):
    /// far below what a float32 accumulation of 10⁵ terms reaches (≈ 1e-6 even pairwise), so it proves float64.
    public static let float64 = 1e-10
    /// The reference's backward against central differences (h = 1e-6) of its forward, both float64: truncation
    /// h²·f‴ ≈ 1e-12 plus rounding ε₆₄·|L|/h ≈ 1e-9 for the losses used here.
    public static let finiteDifference = 1e-6
    /// Two backends each within `t` of the reference agree within 2t (relative to the reference's scale).
    public static func betweenBackends(_ t: Double) -> Double { 2 * t }
}

/// One row of the table.
public struct OpCase: Sendable {
    public let name: String
    let prepare: @Sendable (inout SeededGenerator) throws -> PreparedOp

    public init(_ name: String, _ prepare: @escaping @Sendable (inout SeededGenerator) throws -> PreparedOp) {
        self.name = name
        self.prepare = prepare
    }

    public var seed: UInt64 { TestSeed.forName(name) }

    /// Fresh inputs for this row, from its own seed.
    public func prepared() throws -> PreparedOp {
        var generator = SeededGenerator(seed: seed)
        return try prepare(&generator)
    }
}

/// One row with its inputs made: what it should produce, and how to produce it on a backend.
public struct PreparedOp {
    /// The outputs, in the order `run` returns them, with the reference's values and the tolerance of each.
    public var expected: [ExpectedOutput]
    /// Uploads the inputs to `backend`, runs the operation, downloads the outputs.
    public var run: (any Backend) throws -> [[Double]]
    /// For backward operations: each gradient of the reference against finite differences.
    public var gradientChecks: [GradientCheck] = []
}

public struct ExpectedOutput {
    public var name: String
    public var values: [Double]
    public var tolerance: Double

    public init(_ name: String, _ values: [Double], _ tolerance: Double) {
        self.name = name
        self.values = values
        self.tolerance = tolerance
    }
}

/// `analytic` should be the gradient of `loss` at `input`.
public struct GradientCheck {
    public var name: String
    public var input: [Double]
    public var analytic: [Double]
    public var loss: ([Double]) -> Double
}

// MARK: Random inputs

/// The seed of every random input: fixed, so a failure reproduces, and overridable with `VITFORGE_TEST_SEED=<n>`
/// to run the same tests on other inputs.
public enum TestSeed {
    public static let base: UInt64 = {
        if let text = getenv("VITFORGE_TEST_SEED"), let seed = UInt64(String(cString: text)) { return seed }
        return 0x5EED_0F_7F0E
    }()

    /// A seed of its own for each row (FNV-1a of its name), so adding a row does not change the others' inputs.
    public static func forName(_ name: String) -> UInt64 {
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
    public func float64Values(_ buffer: Buffer, doubles: Int) throws -> [Double] {
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
public func normalizedError(_ got: [Double], _ expected: [Double], relativeTo scale: [Double]? = nil)
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

// MARK: Checking a row on a backend

/// One output of a row on one backend, compared with the reference.
public struct OutputCheck: Sendable {
    public var output: String
    /// `normalizedError` of the backend's values against the reference's.
    public var error: Double
    public var tolerance: Double
    /// Where the error is largest, with the two values there (for the failure message).
    public var worstIndex: Int
    public var got: Double
    public var expected: Double

    public var passed: Bool { error <= tolerance }
}

extension OpCase {
    /// Runs the row on `backend` and compares every output with the reference. Throws when the backend throws, or
    /// when it returns a different number of outputs than the reference has (a broken row).
    public func check(on backend: any Backend) throws -> [OutputCheck] {
        let op = try prepared()
        let outputs = try op.run(backend)
        guard outputs.count == op.expected.count else {
            throw OpTableError("\(name): run returned \(outputs.count) outputs, the reference has \(op.expected.count)")
        }
        return zip(outputs, op.expected).map { got, expected in
            let (error, worst) = normalizedError(got, expected.values)
            return OutputCheck(output: expected.name, error: error, tolerance: expected.tolerance, worstIndex: worst,
                               got: got.indices.contains(worst) ? got[worst] : .nan,
                               expected: expected.values.indices.contains(worst) ? expected.values[worst] : .nan)
        }
    }
}

public struct OpTableError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
