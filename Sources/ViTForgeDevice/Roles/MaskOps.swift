/// A role of `Backend`: the pruning methods' channel masks (masked LayerNorm, scaling by a mask, mask gradients,
/// penalties).
public protocol MaskOps: DeviceMemory {
    /// The implementation behind `maskedLayerNormForward`, its arguments already checked.
    func uncheckedMaskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer,
                                         mean: Buffer, rstd: Buffer, rows: Int, cols: Int, eps: Float) throws

    /// The implementation behind `maskedLayerNormBackward`, its arguments already checked.
    func uncheckedMaskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer,
                                          rstd: Buffer, dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int,
                                          cols: Int) throws

    /// The implementation behind `scaleColumns`, its arguments already checked.
    func uncheckedScaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `scaleRows`, its arguments already checked.
    func uncheckedScaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `maskGradient`, its arguments already checked.
    func uncheckedMaskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `maskGradientRows`, its arguments already checked.
    func uncheckedMaskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `segmentSum`, its arguments already checked.
    func uncheckedSegmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer, segments: Int) throws

    /// The implementation behind `addScaledSign`, its arguments already checked.
    func uncheckedAddScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws
}

/// The checked entry points: every argument check of the device layer, made once here for every backend (see
/// `ArgumentCheck`).
extension MaskOps {
    /// LayerNorm over the kept channels only (`keep[c]` is 1 or 0, a residual-width mask): each row's mean and
    /// variance over its kept columns, removed columns written 0 — what the LayerNorm of the physically smaller
    /// model computes on the kept channels.
    public func maskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer,
                                       mean: Buffer, rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        let check = try ArgumentCheck("maskedLayerNormForward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (gamma, "gamma", cols), (beta, "beta", cols), (keep, "keep", cols),
                          (out, "out", n), (mean, "mean", rows), (rstd, "rstd", rows))
        try uncheckedMaskedLayerNormForward(x: x, gamma: gamma, beta: beta, keep: keep, out: out, mean: mean,
                                            rstd: rstd, rows: rows, cols: cols, eps: eps)
    }

    /// The backward of `maskedLayerNormForward`: accumulates into the kept columns of `dX`, `dGamma`, `dBeta`
    /// (removed columns' outputs are constant, so they receive nothing).
    public func maskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer,
                                        rstd: Buffer, dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int,
                                        cols: Int) throws {
        let check = try ArgumentCheck("maskedLayerNormBackward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((dOut, "dOut", n), (x, "x", n), (gamma, "gamma", cols), (keep, "keep", cols),
                          (mean, "mean", rows), (rstd, "rstd", rows), (dX, "dX", n), (dGamma, "dGamma", cols),
                          (dBeta, "dBeta", cols))
        try uncheckedMaskedLayerNormBackward(dOut: dOut, x: x, gamma: gamma, keep: keep, mean: mean, rstd: rstd, dX: dX,
                                             dGamma: dGamma, dBeta: dBeta, rows: rows, cols: cols)
    }

    /// `out[r, c] = x[r, c]·mask[c]` for x [rows, cols]: a channel mask in the forward (soft or 0/1). `out` may be
    /// `x` (in place).
    public func scaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("scaleColumns", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (mask, "mask", cols), (out, "out", n))
        try uncheckedScaleColumns(x, mask: mask, out: out, rows: rows, cols: cols)
    }

    /// `out[r, c] = x[r, c]·mask[r]` for x [rows, cols]: a mask on a weight's output rows (`out` may be `x`).
    public func scaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("scaleRows", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (mask, "mask", rows), (out, "out", n))
        try uncheckedScaleRows(x, mask: mask, out: out, rows: rows, cols: cols)
    }

    /// The masked-gradient path: `dMask[c] += Σ_r x[r, c]·dY[r, c]` for x, dY [rows, cols], where x is the tensor
    /// before the mask and dY the gradient of the masked tensor: the gradient of each mask entry. Sums in float64
    /// on the CPU; on OpenCL two stages (partial sums over row tiles, then a combine per column).
    public func maskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("maskGradient", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (dY, "dY", n), (dMask, "dMask", cols))
        try uncheckedMaskGradient(x: x, dY: dY, dMask: dMask, rows: rows, cols: cols)
    }

    /// The same for a mask on rows: `dMask[r] += Σ_c x[r, c]·dY[r, c]` (one dot product per row, float64 sums).
    public func maskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("maskGradientRows", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (dY, "dY", n), (dMask, "dMask", rows))
        try uncheckedMaskGradientRows(x: x, dY: dY, dMask: dMask, rows: rows, cols: cols)
    }

    /// `dst[s] += Σ src[members[k]]` over `k ∈ offsets[s] ..< offsets[s + 1]` (Int32 `offsets` [segments + 1] and
    /// `members`): the adjoint of a gather with repeated indices, e.g. one mask value's gradient from its columns'.
    public func segmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer, segments: Int) throws {
        let check = try ArgumentCheck("segmentSum", ["segments": segments])
        try check.buffers((offsets, "offsets", segments + 1), (dst, "dst", segments))
        try uncheckedSegmentSum(src, offsets: offsets, members: members, dst: dst, segments: segments)
    }

    /// `y[i] += alpha·sign(x[i])` (sign(0) = 0): an ℓ1 penalty's subgradient.
    public func addScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws {
        let check = try ArgumentCheck("addScaledSign", ["count": count])
        try check.buffers((x, "x", count), (y, "y", count))
        try uncheckedAddScaledSign(x, alpha: alpha, y: y, count: count)
    }
}
