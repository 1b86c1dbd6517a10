import ViTForgeDevice
import ViTForgeTrain

/// The first two moments of a layer's inputs over calibration tokens, in float64: what least-squares compensation
/// and OBS scores read (`LeastSquaresRefit`, `StructuredOBS`). The covariance rather than the raw second moment
/// E[h̃ h̃ᵀ] of `h̃ = [h; 1]`: the two carry the same information (E[h̃h̃ᵀ] = [[Σ + μμᵀ, μ], [μᵀ, 1]]), and a
/// least-squares fit with an unpenalised intercept is exactly a fit on centred data, which is better conditioned.
public struct ActivationMoments: Equatable, Sendable {
    /// Columns (the layer's inputs).
    public var count: Int
    /// Tokens observed.
    public var observations: Int
    /// E[h] [count].
    public var mean: [Double]
    /// E[(h − μ)(h − μ)ᵀ] [count, count] row-major, symmetric (population: divided by `observations`).
    public var covariance: [Double]

    public init(count: Int, observations: Int, mean: [Double], covariance: [Double]) {
        self.count = count
        self.observations = observations
        self.mean = mean
        self.covariance = covariance
    }

    /// The moments of the rows of x [rows, cols] (row-major), computed directly in float64: the reference the device
    /// accumulation is tested against, and what tests build small problems from.
    public init(rows x: [Double], cols: Int) {
        let rows = cols > 0 ? x.count / cols : 0
        var mean = [Double](repeating: 0, count: cols)
        for r in 0 ..< rows { for c in 0 ..< cols { mean[c] += x[r * cols + c] } }
        mean = mean.map { $0 / Double(max(rows, 1)) }
        var covariance = [Double](repeating: 0, count: cols * cols)
        for r in 0 ..< rows {
            for i in 0 ..< cols {
                let di = x[r * cols + i] - mean[i]
                for j in 0 ..< cols { covariance[i * cols + j] += di * (x[r * cols + j] - mean[j]) }
            }
        }
        self.init(count: cols, observations: rows, mean: mean,
                  covariance: covariance.map { $0 / Double(max(rows, 1)) })
    }

    /// Σ[i, j].
    public subscript(i: Int, j: Int) -> Double { covariance[i * count + j] }

    /// The mean of the covariance's diagonal (the average variance), which the ridge is relative to.
    public var meanVariance: Double {
        count == 0 ? 0 : (0 ..< count).reduce(0) { $0 + covariance[$1 * count + $1] } / Double(count)
    }
}

/// Accumulates the Gram matrix of a layer's inputs on the device, one batch at a time: the rows of the activation
/// buffer, shifted by a fixed per-column value, go through one GEMM (`Backend.gram`, AᵀA) into a float32 tile and
/// one transposed mat-vec into column sums, and both are merged into float64 sums on the host after every batch.
/// The shift (the first batch's column means) keeps the float32 tile close to the centred second moment, so the
/// covariance is not the small difference of two large float32 numbers (post-GELU neurons with a large mean and a
/// small spread, the ones VBP removes, would otherwise lose their variance to cancellation). A float32 tile holds
/// one batch's sum only (e.g. 64 images × 197 tokens), so its rounding stays at float32 over that many terms.
///
/// Device memory: the `GramScratch` shared by every accumulator of a pass; host memory: cols² float64 per layer.
public final class GramAccumulator {
    public let cols: Int
    /// Σ (h − s)(h − s)ᵀ and Σ (h − s) over the rows merged so far, float64.
    private var gram: [Double]
    private var sums: [Double]
    private var shift: [Float]?
    private var shiftBuffer: Buffer?
    public private(set) var observations = 0

    public init(cols: Int) {
        self.cols = cols
        gram = [Double](repeating: 0, count: cols * cols)
        sums = [Double](repeating: 0, count: cols)
    }

    /// Merges the rows of x [rows, cols] (a device buffer of `scratch`'s backend).
    public func add(_ x: Buffer, rows: Int, scratch: GramScratch) throws {
        guard rows > 0 else { return }
        let backend = scratch.backend
        try scratch.reserve(rows: rows, cols: cols)
        if shift == nil {
            try backend.matVec(x, rows: rows, cols: cols, x: scratch.ones, y: scratch.sums, transposed: true)
            let first = try backend.read(scratch.sums, count: cols).map { $0 / Float(rows) }
            shift = first
            shiftBuffer = try backend.makeBuffer(first.map { -$0 })
        }
        guard let shiftBuffer else { return }
        try backend.copy(x, srcOffset: 0, to: scratch.shifted, dstOffset: 0, count: rows * cols)
        try backend.addBias(scratch.shifted, bias: shiftBuffer, rows: rows, cols: cols)
        try backend.gram(scratch.shifted, rows: rows, cols: cols, out: scratch.tile)
        try backend.matVec(scratch.shifted, rows: rows, cols: cols, x: scratch.ones, y: scratch.sums, transposed: true)
        let tile = try backend.read(scratch.tile, count: cols * cols)
        let columnSums = try backend.read(scratch.sums, count: cols)
        for i in 0 ..< cols * cols { gram[i] += Double(tile[i]) }
        for i in 0 ..< cols { sums[i] += Double(columnSums[i]) }
        observations += rows
    }

    /// Merges the rows of [left | right] (left [rows, leftCols] and right [rows, cols − leftCols], device buffers of
    /// `scratch`'s backend): the two are placed side by side on the device (two copies and a gather) and go through
    /// the same GEMM, so the moments hold both Grams and the cross term between them (the sequential compensation:
    /// the full model's inputs of a layer beside the pruned model's).
    public func add(_ left: Buffer, leftCols: Int, beside right: Buffer, rows: Int, scratch: GramScratch) throws {
        guard rows > 0 else { return }
        let rightCols = cols - leftCols
        guard leftCols >= 0, rightCols >= 0 else {
            throw PruneError.planMismatch("Gram of \(cols) columns: \(leftCols) on the left do not fit")
        }
        let joined = try scratch.sideBySide(left, leftCols: leftCols, right, rightCols: rightCols, rows: rows)
        try add(joined, rows: rows, scratch: scratch)
    }

    /// The mean and covariance of everything merged, over every rank of `collective` (each rank's moments combined
    /// exactly, as Chan et al.'s pairwise update does for variances).
    public func moments(collective: any Collective = Collectives.world) throws -> ActivationMoments {
        let local = localMoments()
        guard collective.size > 1 else { return local }
        let n = Double(local.observations)
        let total = try collective.sum([n])[0]
        guard total > 0 else { throw PruneError.invalidCalibration("no calibration tokens on any rank") }
        let mean = try collective.sum(local.mean.map { $0 * n / total })
        var scatter = local.covariance.map { $0 * n }
        for i in 0 ..< cols {
            let di = local.mean[i] - mean[i]
            for j in 0 ..< cols { scatter[i * cols + j] += n * di * (local.mean[j] - mean[j]) }
        }
        let covariance = try collective.sum(scatter).map { $0 / total }
        return ActivationMoments(count: cols, observations: Int(total), mean: mean, covariance: covariance)
    }

    /// This process's moments: with m = Σ(h − s)/n, μ = s + m and Σ = Σ(h − s)(h − s)ᵀ/n − m mᵀ (symmetrised: the
    /// GEMM's two triangles may round differently).
    private func localMoments() -> ActivationMoments {
        let n = Double(max(observations, 1))
        let shifted = sums.map { $0 / n }
        let mean = (0 ..< cols).map { Double(shift?[$0] ?? 0) + shifted[$0] }
        var covariance = [Double](repeating: 0, count: cols * cols)
        for i in 0 ..< cols {
            for j in i ..< cols {
                let value = 0.5 * (gram[i * cols + j] + gram[j * cols + i]) / n - shifted[i] * shifted[j]
                covariance[i * cols + j] = value
                covariance[j * cols + i] = value
            }
        }
        return ActivationMoments(count: cols, observations: observations, mean: mean, covariance: covariance)
    }
}

/// Device buffers one accumulation pass shares between its accumulators (each merges its tile to the host before
/// the next one runs): the shifted copy of the activations, the float32 Gram tile, column sums and a ones vector
/// (and, for the side-by-side Gram, the joined activations).
public final class GramScratch {
    public let backend: Backend
    private(set) var shifted: Buffer
    private(set) var tile: Buffer
    private(set) var sums: Buffer
    private(set) var ones: Buffer
    /// `sideBySide`'s buffers: the two inputs one after the other, the joined rows, and the gather's indices for
    /// the shape [rows, leftCols, rightCols] they were built for.
    private var stacked: Buffer
    private var joined: Buffer
    private var joinIndices: Buffer
    private var joinShape: [Int] = []

    public init(backend: Backend) throws {
        self.backend = backend
        stacked = try backend.allocate(1)
        joined = try backend.allocate(1)
        joinIndices = try backend.makeBuffer([Int32(0)])
        shifted = try backend.allocate(1)
        tile = try backend.allocate(1)
        sums = try backend.allocate(1)
        ones = try backend.makeBuffer([Float(1)])
    }

    /// [left | right] row by row, in a buffer of the scratch (valid until the next call): both copied into one
    /// buffer, one after the other, then gathered into rows of leftCols + rightCols.
    func sideBySide(_ left: Buffer, leftCols: Int, _ right: Buffer, rightCols: Int, rows: Int) throws -> Buffer {
        let cols = leftCols + rightCols, count = rows * cols
        if stacked.count < count { stacked = try backend.allocate(count) }
        if joined.count < count { joined = try backend.allocate(count) }
        if joinShape != [rows, leftCols, rightCols] {
            var indices = [Int32](repeating: 0, count: count)
            for r in 0 ..< rows {
                for c in 0 ..< leftCols { indices[r * cols + c] = Int32(r * leftCols + c) }
                for c in 0 ..< rightCols { indices[r * cols + leftCols + c] = Int32(rows * leftCols + r * rightCols + c) }
            }
            joinIndices = try backend.makeBuffer(indices)
            joinShape = [rows, leftCols, rightCols]
        }
        if leftCols > 0 { try backend.copy(left, srcOffset: 0, to: stacked, dstOffset: 0, count: rows * leftCols) }
        if rightCols > 0 {
            try backend.copy(right, srcOffset: 0, to: stacked, dstOffset: rows * leftCols, count: rows * rightCols)
        }
        try backend.gather(src: stacked, indices: joinIndices, dst: joined, count: count)
        return joined
    }

    /// Grows the buffers to hold `rows` × `cols` activations (never shrinks: a pass sees one batch size).
    func reserve(rows: Int, cols: Int) throws {
        if shifted.count < rows * cols { shifted = try backend.allocate(rows * cols) }
        if tile.count < cols * cols { tile = try backend.allocate(cols * cols) }
        if sums.count < cols { sums = try backend.allocate(cols) }
        if ones.count < rows { ones = try backend.makeBuffer([Float](repeating: 1, count: rows)) }
    }
}
