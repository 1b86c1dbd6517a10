import ViTForgeDevice

extension LeastSquaresRefit {
    /// The refit of a layer `y = W·h + b` whose inputs in the pruned model are `p` (the kept channels, computed by
    /// the already pruned and refitted model upstream) while its target stays the unpruned model's output `W·h + b`:
    ///
    ///     min over (W', b')  E‖W·h + b − (W'·p + b')‖²  +  λ‖W' − W_K‖²,
    ///
    /// from the joint moments of z = [h; p] (`joint`: `inputs` columns of h, then `kept.count` of p, whose column c
    /// is the pruned model's copy of input `kept[c]`). With Σ the joint covariance and W' = W_K + A,
    /// `(Σ_pp + λI)·Aᵀ = (W·Σ_hp − W_K·Σ_pp)ᵀ` and `b' = b + W·μ_h − W'·μ_p`. When p is h's kept columns (nothing
    /// changed upstream) Σ_hp = Σ_{:,K}, Σ_pp = Σ_KK and the right-hand side is W_R·Σ_RK: exactly the parallel
    /// refit (`refit(weight:bias:outputs:kept:moments:ridge:)`). λ is relative to h's mean variance, as there.
    /// The errors are those of the same three candidates on p: the plain cut (W_K, b), the mean shift (W_K with the
    /// intercept refitted) and the refit; A = 0 is a candidate without penalty, so refit ≤ mean shift in sample.
    public static func refit(weight: [Double], bias: [Double], outputs: Int, inputs: Int, kept: [Int],
                             joint: ActivationMoments, ridge: Double) throws -> Result {
        let k = kept.count, n = inputs, width = inputs + kept.count
        guard weight.count == outputs * n, bias.count == outputs, joint.count == width else {
            throw PruneError.planMismatch("refit: a \(outputs)×\(n) layer with \(k) pruned inputs needs \(outputs * n) "
                                          + "weights, \(outputs) biases and \(width) joint moments; got "
                                          + "\(weight.count), \(bias.count) and \(joint.count)")
        }
        guard ridge >= 0, ridge.isFinite else { throw PruneError.invalidBudget("ridge \(ridge) must be ≥ 0") }
        guard kept.allSatisfy({ $0 >= 0 && $0 < n }), Set(kept).count == k else {
            throw PruneError.indexOutOfRange("refit: kept inputs must be distinct, in 0..<\(n)")
        }
        let sigma = joint.covariance
        func block(_ rows: Range<Int>, _ cols: Range<Int>) -> [Double] {
            var out = [Double](repeating: 0, count: rows.count * cols.count)
            for (a, i) in rows.enumerated() {
                for (c, j) in cols.enumerated() { out[a * cols.count + c] = sigma[i * width + j] }
            }
            return out
        }
        let wK = columns(weight, rows: outputs, cols: n, kept)
        var a = [Double](repeating: 0, count: outputs * k)
        if k > 0 {
            let sigmaPP = block(n ..< width, n ..< width)
            let cross = LAPACK.multiply(weight, block(0 ..< n, n ..< width), m: outputs, n: k, k: n)
            let own = LAPACK.multiply(wK, sigmaPP, m: outputs, n: k, k: k)
            let c = zip(cross, own).map { $0 - $1 }
            var system = sigmaPP
            let hMoments = ActivationMoments(count: n, observations: joint.observations,
                                             mean: Array(joint.mean[0 ..< n]), covariance: block(0 ..< n, 0 ..< n))
            let lambda = Self.lambda(ridge: ridge, moments: hMoments)
            for i in 0 ..< k { system[i * k + i] += lambda }
            a = try solve(system, n: k, rhsRows: c, columns: outputs)
        }
        let newWeight = zip(wK, a).map { $0 + $1 }
        // b' = b + W·μ_h − W'·μ_p, and the plain cut's mean error W·μ_h − W_K·μ_p.
        var newBias = bias, meanSquared = 0.0
        for o in 0 ..< outputs {
            var full = 0.0, cutMean = 0.0, refitMean = 0.0
            for j in 0 ..< n { full += weight[o * n + j] * joint.mean[j] }
            for c in 0 ..< k {
                cutMean += wK[o * k + c] * joint.mean[n + c]
                refitMean += newWeight[o * k + c] * joint.mean[n + c]
            }
            newBias[o] += full - refitMean
            meanSquared += (full - cutMean) * (full - cutMean)
        }
        // E‖e‖² = tr(D Σ Dᵀ) with D = [W, −W'] over z: the deviation of the output from its target.
        func deviation(_ candidate: [Double]?) -> Double {
            var d = [Double](repeating: 0, count: outputs * width)
            for o in 0 ..< outputs {
                for j in 0 ..< n { d[o * width + j] = weight[o * n + j] }
                if let candidate { for c in 0 ..< k { d[o * width + n + c] = -candidate[o * k + c] } }
            }
            let product = LAPACK.multiply(d, sigma, m: outputs, n: width, k: width)
            var sum = 0.0
            for i in 0 ..< outputs * width { sum += product[i] * d[i] }
            return max(0, sum)
        }
        let variance = deviation(nil)
        let scale = variance > 0 ? 1 / variance : 1
        let meanShift = deviation(wK)
        let error = ReconstructionError(cut: (meanShift + meanSquared) * scale, meanShift: meanShift * scale,
                                        refit: deviation(newWeight) * scale, outputVariance: variance)
        return Result(weight: newWeight, bias: newBias, error: error)
    }
}
