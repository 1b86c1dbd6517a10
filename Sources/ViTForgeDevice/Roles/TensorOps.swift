/// A role of `Backend`: matrix products, elementwise arithmetic, gather/scatter and the reductions, what any layer
/// is built from.
public protocol TensorOps: DeviceMemory {
    /// The implementation behind `gemm`, its arguments already checked.
    func uncheckedGemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws

    /// The implementation behind `gemmStridedBatched`, its arguments already checked.
    func uncheckedGemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws

    /// The implementation behind `addBias`, its arguments already checked.
    func uncheckedAddBias(_ x: Buffer, bias: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `addBiasBackward`, its arguments already checked.
    func uncheckedAddBiasBackward(dOut: Buffer, dBias: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `add`, its arguments already checked.
    func uncheckedAdd(_ a: Buffer, _ b: Buffer, out: Buffer, count: Int) throws

    /// The implementation behind `axpy`, its arguments already checked.
    func uncheckedAxpy(alpha: Float, x: Buffer, y: Buffer, count: Int) throws

    /// The implementation behind `scale`, its arguments already checked.
    func uncheckedScale(_ x: Buffer, by alpha: Float, count: Int) throws

    /// The implementation behind `gather`, its arguments already checked.
    func uncheckedGather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws

    /// The implementation behind `scatterAdd`, its arguments already checked.
    func uncheckedScatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws

    /// The implementation behind `columnStatisticsAccumulate`, its arguments already checked.
    func uncheckedColumnStatisticsAccumulate(x: Buffer, rows: Int, cols: Int, state: Buffer, countBefore: Int) throws

    /// The implementation behind `sum`, its arguments already checked.
    func uncheckedSum(_ x: Buffer, count: Int) throws -> Double

    /// The implementation behind `sumOfSquares`, its arguments already checked.
    func uncheckedSumOfSquares(_ x: Buffer, count: Int) throws -> Double

    /// The implementation behind `sumOfAbs`, its arguments already checked.
    func uncheckedSumOfAbs(_ x: Buffer, count: Int) throws -> Double
}

/// The checked entry points: every argument check of the device layer, made once here for every backend (see
/// `ArgumentCheck`).
extension TensorOps {
    /// `C = alpha·op(A)·op(B) + beta·C` with `op(A)` m×k, `op(B)` k×n, `C` m×n (leading dimensions and element
    /// offsets in `spec`).
    public func gemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        var single = spec
        single.batch = 1
        guard try ArgumentCheck("gemm").gemm(single, a: a, b: b, c: c) else { return }
        try uncheckedGemm(spec, a: a, b: b, c: c)
    }

    /// `spec.batch` independent products; matrix `i` starts at `offset + i·stride` in each buffer (attention:
    /// one product per image for one head).
    public func gemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        guard try ArgumentCheck("gemmStridedBatched").gemm(spec, a: a, b: b, c: c) else { return }
        try uncheckedGemmStridedBatched(spec, a: a, b: b, c: c)
    }

    /// `x[r, c] += bias[c]` for x [rows, cols].
    public func addBias(_ x: Buffer, bias: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("addBias", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (bias, "bias", cols))
        try uncheckedAddBias(x, bias: bias, rows: rows, cols: cols)
    }

    /// Bias gradient: `dBias[c] += Σ_r dOut[r, c]`.
    public func addBiasBackward(dOut: Buffer, dBias: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("addBiasBackward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((dOut, "dOut", n), (dBias, "dBias", cols))
        try uncheckedAddBiasBackward(dOut: dOut, dBias: dBias, rows: rows, cols: cols)
    }

    /// Residual add: `out[i] = a[i] + b[i]` (`out` may alias `a` or `b`).
    public func add(_ a: Buffer, _ b: Buffer, out: Buffer, count: Int) throws {
        let check = try ArgumentCheck("add", ["count": count])
        try check.buffers((a, "a", count), (b, "b", count), (out, "out", count))
        try uncheckedAdd(a, b, out: out, count: count)
    }

    /// `y[i] += alpha·x[i]`: the residual's backward, and gradient accumulation.
    public func axpy(alpha: Float, x: Buffer, y: Buffer, count: Int) throws {
        let check = try ArgumentCheck("axpy", ["count": count])
        try check.buffers((x, "x", count), (y, "y", count))
        try uncheckedAxpy(alpha: alpha, x: x, y: y, count: count)
    }

    /// `x[i] *= alpha`.
    public func scale(_ x: Buffer, by alpha: Float, count: Int) throws {
        let check = try ArgumentCheck("scale", ["count": count])
        try check.buffers((x, "x", count))
        try uncheckedScale(x, by: alpha, count: count)
    }

    /// `dst[i] = src[indices[i]]` for `i < count` (`indices`: Int32 element indices into `src`).
    public func gather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let check = try ArgumentCheck("gather", ["count": count])
        try check.buffers((indices, "indices", count), (dst, "dst", count))
        try uncheckedGather(src: src, indices: indices, dst: dst, count: count)
    }

    /// The adjoint of `gather`: `dst[indices[i]] += src[i]`. Indices must be unique (no write conflicts).
    public func scatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let check = try ArgumentCheck("scatterAdd", ["count": count])
        try check.buffers((src, "src", count), (indices, "indices", count))
        try uncheckedScatterAdd(src: src, indices: indices, dst: dst, count: count)
    }

    /// Merges the rows of x [rows, cols] into running per-column statistics kept in float64.
    /// `state` holds `ColumnStatistics.stateCount(cols)` elements: float64 mean[cols] then float64 M2[cols]
    /// (Chan et al.'s parallel update), and `countBefore` is how many rows were merged before this call.
    /// Start from a zero-filled state with `countBefore = 0`.
    public func columnStatisticsAccumulate(x: Buffer, rows: Int, cols: Int, state: Buffer, countBefore: Int) throws {
        let check = try ArgumentCheck("columnStatisticsAccumulate", ["rows": rows, "cols": cols,
                                      "countBefore": countBefore])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (state, "state", ColumnStatistics.stateCount(cols)))
        try uncheckedColumnStatisticsAccumulate(x: x, rows: rows, cols: cols, state: state, countBefore: countBefore)
    }

    /// `Σ x[i]`, accumulated in float64, returned to the host (waits for the device).
    public func sum(_ x: Buffer, count: Int) throws -> Double {
        let check = try ArgumentCheck("sum", ["count": count])
        try check.buffers((x, "x", count))
        return try uncheckedSum(x, count: count)
    }

    /// `Σ x[i]²`, accumulated in float64 (gradient-norm clipping, normalisation).
    public func sumOfSquares(_ x: Buffer, count: Int) throws -> Double {
        let check = try ArgumentCheck("sumOfSquares", ["count": count])
        try check.buffers((x, "x", count))
        return try uncheckedSumOfSquares(x, count: count)
    }

    /// `Σ |x[i]|`, accumulated in float64 (an ℓ1 penalty's value).
    public func sumOfAbs(_ x: Buffer, count: Int) throws -> Double {
        let check = try ArgumentCheck("sumOfAbs", ["count": count])
        try check.buffers((x, "x", count))
        return try uncheckedSumOfAbs(x, count: count)
    }
}
