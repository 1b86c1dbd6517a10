import ViTForgeDevice

/// Least-squares compensation of one linear layer `y = W·h + b` (W [outputs, inputs]) whose inputs lose the channels
/// outside `kept` (He et al. 2017, "Channel Pruning"; ThiNet): the kept columns and the bias are refitted so that
/// the layer's output on the calibration tokens is reproduced as well as the kept inputs allow,
///
///     min over (W', b')  E‖W·h + b − (W'·h_kept + b')‖²  +  λ‖W' − W_kept‖²,
///
/// from the inputs' moments alone (`ActivationMoments`). Without the ridge this is the issue's
/// `[W' b'] = W·E[h h̃ᵀ]·E[h̃ h̃ᵀ]⁻¹` with `h̃ = [h_kept; 1]`; it is computed as a correction of the plain cut,
/// `W' = W_K + A`, `b' = b + W_R·μ_R − A·μ_K` with `A = W_R·Σ_RK·(Σ_KK + λI)⁻¹` (R removed, K kept, Σ the
/// covariance), which is the same solution when λ = 0. The ridge shrinks the correction towards the plain cut, not
/// the kept weights towards zero, and never touches the intercept, so that
/// - nothing removed returns W and b exactly, whatever λ;
/// - the intercept alone is VBP's mean shift (`b + W_R·μ_R`): regressing on the constant only gives it;
/// - the refit's in-sample error is never above the mean shift's (A = 0 is a candidate with no penalty).
/// λ = `ridge` × the mean of the layer's input variances over all its channels (before the cut), so that it is
/// scale-free and the same for every kept set of a layer (OBS's costs use the same λ; `StructuredOBS`).
public enum LeastSquaresRefit {
    /// The default of `--compensate-ridge`: 1e-2 of the mean input variance, the relative damping GPTQ/SparseGPT
    /// put on their Hessians; large enough to keep dead or duplicated neurons from producing huge weights, small
    /// enough to leave the fit of well-sampled channels unchanged.
    public static let defaultRidge = 1e-2

    public struct Result: Equatable, Sendable {
        /// W' [outputs, kept.count] row-major, and b' [outputs].
        public var weight: [Double]
        public var bias: [Double]
        /// The layer's output error E‖Δy‖² of the plain cut (removed inputs zeroed), of the mean shift (removed
        /// inputs held at their means) and of the refit, each divided by the output's variance tr(W·Σ·Wᵀ).
        public var error: ReconstructionError
    }

    public struct ReconstructionError: Codable, Equatable, Sendable {
        public var cut: Double
        public var meanShift: Double
        public var refit: Double
        /// tr(W·Σ·Wᵀ), the output variance the errors are relative to (absolute, for tests).
        public var outputVariance: Double

        enum CodingKeys: String, CodingKey {
            case cut, refit
            case meanShift = "mean_shift"
            case outputVariance = "output_variance"
        }
    }

    /// λ for a layer with these input moments.
    public static func lambda(ridge: Double, moments: ActivationMoments) -> Double { ridge * moments.meanVariance }

    /// The refit of `weight` [outputs, inputs] (row-major, float64) and `bias` [outputs] keeping the input channels
    /// `kept` (ascending), from the inputs' moments.
    public static func refit(weight: [Double], bias: [Double], outputs: Int, kept: [Int], moments: ActivationMoments,
                             ridge: Double) throws -> Result {
        let inputs = moments.count
        guard weight.count == outputs * inputs, bias.count == outputs else {
            throw PruneError.planMismatch("refit: a \(outputs)×\(inputs) layer needs \(outputs * inputs) weights and "
                                          + "\(outputs) biases, got \(weight.count) and \(bias.count)")
        }
        guard ridge >= 0, ridge.isFinite else { throw PruneError.invalidBudget("ridge \(ridge) must be ≥ 0") }
        let keptSet = Set(kept)
        guard kept.allSatisfy({ $0 >= 0 && $0 < inputs }), keptSet.count == kept.count else {
            throw PruneError.indexOutOfRange("refit: kept inputs must be distinct, in 0..<\(inputs)")
        }
        let removed = (0 ..< inputs).filter { !keptSet.contains($0) }
        let k = kept.count, r = removed.count
        let wK = columns(weight, rows: outputs, cols: inputs, kept)
        let wR = columns(weight, rows: outputs, cols: inputs, removed)
        let sigma = moments.covariance
        func block(_ rowsIdx: [Int], _ colsIdx: [Int]) -> [Double] {
            var out = [Double](repeating: 0, count: rowsIdx.count * colsIdx.count)
            for (a, i) in rowsIdx.enumerated() {
                for (c, j) in colsIdx.enumerated() { out[a * colsIdx.count + c] = sigma[i * inputs + j] }
            }
            return out
        }
        // A [outputs, k] = W_R·Σ_RK·(Σ_KK + λI)⁻¹, i.e. (Σ_KK + λI)·Aᵀ = Σ_KR·W_Rᵀ: the rows of C = W_R·Σ_RK are
        // the right-hand sides.
        var a = [Double](repeating: 0, count: outputs * k)
        if r > 0 && k > 0 {
            let c = LAPACK.multiply(wR, block(removed, kept), m: outputs, n: k, k: r)
            var system = block(kept, kept)
            let lambda = Self.lambda(ridge: ridge, moments: moments)
            for i in 0 ..< k { system[i * k + i] += lambda }
            a = try solve(system, n: k, rhsRows: c, columns: outputs)
        }
        let muK = kept.map { moments.mean[$0] }, muR = removed.map { moments.mean[$0] }
        var newWeight = wK, newBias = bias
        for o in 0 ..< outputs {
            var shift = 0.0
            for (c, _) in removed.enumerated() { shift += wR[o * r + c] * muR[c] }
            for c in 0 ..< k {
                newWeight[o * k + c] += a[o * k + c]
                shift -= a[o * k + c] * muK[c]
            }
            newBias[o] += shift
        }
        let error = reconstructionError(weight: weight, outputs: outputs, kept: kept, removed: removed,
                                        correction: a, moments: moments)
        return Result(weight: newWeight, bias: newBias, error: error)
    }

    /// The errors of the plain cut, the mean shift and the refit with correction `a` [outputs, kept], relative to
    /// the output variance. With the removed part's deviation `e = W_R·(h_R − μ_R) − A·(h_K − μ_K)` (the refit's
    /// intercept makes the mean error zero): E‖e‖² = tr(W_R Σ_RR W_Rᵀ) − 2 tr(A Σ_KR W_Rᵀ) + tr(A Σ_KK Aᵀ); the
    /// mean shift is A = 0; the plain cut adds the squared mean ‖W_R μ_R‖².
    static func reconstructionError(weight: [Double], outputs: Int, kept: [Int], removed: [Int], correction a: [Double],
                                    moments: ActivationMoments) -> ReconstructionError {
        let inputs = moments.count, k = kept.count
        // D = [W_R, −A] over the inputs [removed, kept]: E‖e‖² = tr(D Σ Dᵀ), in one pass over the rows of D.
        var d = [Double](repeating: 0, count: outputs * inputs)
        for o in 0 ..< outputs {
            for j in removed { d[o * inputs + j] = weight[o * inputs + j] }
            for (c, j) in kept.enumerated() { d[o * inputs + j] = -a[o * k + c] }
        }
        func quadratic(_ x: [Double]) -> Double {
            let product = LAPACK.multiply(x, moments.covariance, m: outputs, n: inputs, k: inputs)
            var sum = 0.0
            for i in 0 ..< outputs * inputs { sum += product[i] * x[i] }
            return sum
        }
        var dR = [Double](repeating: 0, count: outputs * inputs)
        var meanSquared = 0.0
        for o in 0 ..< outputs {
            var m = 0.0
            for j in removed {
                dR[o * inputs + j] = weight[o * inputs + j]
                m += weight[o * inputs + j] * moments.mean[j]
            }
            meanSquared += m * m
        }
        let variance = outputVariance(weight: weight, outputs: outputs, moments: moments)
        let scale = variance > 0 ? 1 / variance : 1
        let meanShift = max(0, quadratic(dR))
        return ReconstructionError(cut: (meanShift + meanSquared) * scale, meanShift: meanShift * scale,
                                   refit: max(0, quadratic(d)) * scale, outputVariance: variance)
    }

    /// tr(W·Σ·Wᵀ) = E‖W·(h − μ)‖²: the layer's output variance, what reconstruction errors are relative to.
    public static func outputVariance(weight: [Double], outputs: Int, moments: ActivationMoments) -> Double {
        let n = moments.count
        let product = LAPACK.multiply(weight, moments.covariance, m: outputs, n: n, k: n)
        var sum = 0.0
        for i in 0 ..< outputs * n { sum += product[i] * weight[i] }
        return sum
    }

    /// Xᵀ for (system)·X = Cᵀ with C's rows the right-hand sides; a system that is not numerically positive definite
    /// (λ = 0 with a dead or duplicated channel) is solved on its positive eigen-space instead (the minimum-norm
    /// least-squares solution), so that exactly dependent channels still give the exact fit.
    static func solve(_ system: [Double], n: Int, rhsRows c: [Double], columns: Int) throws -> [Double] {
        if let x = try LAPACK.solvePositiveDefinite(system, n: n, bRows: c, columns: columns) { return x }
        let (values, vectors) = try LAPACK.symmetricEigen(system, n: n)
        let largest = values.map(abs).max() ?? 0
        let cutoff = largest * Double(n) * Double.ulpOfOne
        // X = V·diag(1/λ⁺)·Vᵀ·Cᵀ → Xᵀ = C·V·diag(1/λ⁺)·Vᵀ, with V's columns the eigenvectors (rows of `vectors`).
        let cv = LAPACK.multiply(c, vectors, m: columns, n: n, k: n, transB: true)
        var scaled = cv
        for row in 0 ..< columns {
            for i in 0 ..< n { scaled[row * n + i] = values[i] > cutoff ? cv[row * n + i] / values[i] : 0 }
        }
        return LAPACK.multiply(scaled, vectors, m: columns, n: n, k: n)
    }

    /// The columns `indices` of the row-major [rows, cols] matrix, as a [rows, indices.count] matrix.
    static func columns(_ matrix: [Double], rows: Int, cols: Int, _ indices: [Int]) -> [Double] {
        var out = [Double](repeating: 0, count: rows * indices.count)
        for row in 0 ..< rows {
            for (c, j) in indices.enumerated() { out[row * indices.count + c] = matrix[row * cols + j] }
        }
        return out
    }
}
