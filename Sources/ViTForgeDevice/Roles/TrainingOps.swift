/// A role of `Backend`: the trainer's bookkeeping kept on the device (loss sums and the non-finite flag, clipping,
/// AdamW).
public protocol TrainingOps: DeviceMemory {
    /// The implementation behind `accumulateSum`, its arguments already checked.
    func uncheckedAccumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double], into accumulators: Buffer,
                                flag: Int?, marker: Double) throws

    /// The implementation behind `clipScale`, its arguments already checked.
    func uncheckedClipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int, maxNorm: Double,
                            epsilon: Double) throws

    /// The implementation behind `adamwStep`, its arguments already checked.
    func uncheckedAdamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                            hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws
}

/// The checked entry points: every argument check of the device layer, made once here for every backend (see
/// `ArgumentCheck`).
extension TrainingOps {
    /// A reduction kept on the device, so that a training step reads nothing back: with `s = Σ_{i<count} x[i]`
    /// (`Σ x[i]²` when `squares`) accumulated in float64, `accumulators[j] += weights[j]·s` for every
    /// `j < weights.count` (at most `DeviceFlag.maximumWeights`) whose weight is not 0. `accumulators` holds float64
    /// values (2 elements each), indexed in doubles. With `flag`, a non-finite `s` is recorded: unless
    /// `accumulators[flag]` already holds a smaller non-zero marker, `accumulators[flag] = marker` (> 0, e.g. the
    /// step number) and `accumulators[flag + 1] = s`; zero the flag to clear it. Enqueued like any operation.
    public func accumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double], into accumulators: Buffer,
                              flag: Int?, marker: Double) throws {
        let check = try ArgumentCheck("accumulateSum", ["count": count, "flag": flag ?? 0])
        try check.require(weights.count <= DeviceFlag.maximumWeights,
                          "\(weights.count) weights, at most \(DeviceFlag.maximumWeights)")
        try check.buffers((x, "x", count),
                          (accumulators, "accumulators", 2 * max(weights.count, flag.map { $0 + 2 } ?? 0)))
        try uncheckedAccumulateSum(x, count: count, squares: squares, weights: weights, into: accumulators, flag: flag,
                                   marker: marker)
    }

    /// Gradient clipping with the norm kept on the device: `x[i] *= c` for `c = maxNorm / (√accumulators[index] +
    /// epsilon)` when `c < 1` (x untouched otherwise, and when the norm is NaN), `accumulators` as in
    /// `accumulateSum` (its `squares` sums over every clipped tensor).
    public func clipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int, maxNorm: Double,
                          epsilon: Double) throws {
        let check = try ArgumentCheck("clipScale", ["count": count, "index": index])
        try check.buffers((x, "x", count), (accumulators, "accumulators", 2 * index + 2))
        try uncheckedClipScale(x, count: count, squaredNorm: accumulators, index: index, maxNorm: maxNorm,
                               epsilon: epsilon)
    }

    /// One AdamW step (decoupled weight decay, bias-corrected moments, as `torch.optim.AdamW`) on `count`
    /// elements. Where `mask` is given and `mask[i] == 0`, parameter and moments stay untouched (pruned weights).
    /// With `skipWhen`, the whole update (parameter and moments) is skipped while that flag is non-zero: the
    /// trainer's non-finite-loss flag, so that weights stay as they were before the first bad step until the host
    /// next reads the flag.
    public func adamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                          hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws {
        let check = try ArgumentCheck("adamwStep", ["count": count, "flag index": flag?.index ?? 0])
        try check.require(hyper.step >= 1, "step \(hyper.step) must be ≥ 1 (it is 1-based)")
        try check.buffers((param, "param", count), (grad, "grad", count), (m, "m", count), (v, "v", count))
        if let mask { try check.buffer(mask, "mask", count: count) }
        if let flag { try check.buffer(flag.buffer, "flag", count: 2 * flag.index + 2) }
        try uncheckedAdamwStep(param: param, grad: grad, m: m, v: v, mask: mask, count: count, hyper: hyper,
                               skipWhen: flag)
    }
}
