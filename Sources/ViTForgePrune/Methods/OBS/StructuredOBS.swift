import ViTForgeDevice

/// Optimal Brain Surgeon for structured groups (Kurtic et al. 2023, ZipLM; Frantar & Alistarh 2022, Optimal Brain
/// Compression): for a linear layer `y = W·h + b` with input covariance Σ and the ridge λ of `LeastSquaresRefit`,
/// removing the input group g (columns of W) with the best update of the remaining columns and of the bias costs
///
///     ΔJ_g = tr( W_{:,g} · ((H⁻¹)_{gg})⁻¹ · W_{:,g}ᵀ ),   H = Σ + λI,
///
/// in J(W') = E‖(W − W')(h − μ)‖² + λ‖W' − W‖² (the intercept absorbs the means, hence the covariance), and the
/// update is `W ← W − W_{:,g}·((H⁻¹)_{gg})⁻¹·(H⁻¹)_{g,:}`. After a removal the inverse of the remaining block is
/// `H⁻¹ − (H⁻¹)_{:,g}·((H⁻¹)_{gg})⁻¹·(H⁻¹)_{g,:}` (Schur complement), so greedy removal costs one rank-|g| update
/// per step, and each step's cost is exactly the increase of the optimum of J — the refit error of
/// `LeastSquaresRefit` plus its ridge terms — so the removal order and the compensation agree.
public enum StructuredOBS {
    public struct Step: Equatable, Sendable {
        /// Index into the `groups` given.
        public var group: Int
        /// ΔJ of this removal, given the earlier ones (absolute, in the layer's output units squared).
        public var cost: Double
    }

    /// Greedy removal of the cheapest group, one at a time, until `keep` groups remain; `groups` are disjoint sets
    /// of input columns of `weight` [outputs, moments.count] (row-major). Inputs in no group are never removed.
    public static func greedy(weight: [Double], outputs: Int, groups: [[Int]], moments: ActivationMoments,
                              ridge: Double, keep: Int = 1) throws -> [Step] {
        let n = moments.count
        guard weight.count == outputs * n else {
            throw PruneError.planMismatch("obs: \(weight.count) weights for \(outputs)×\(n)")
        }
        var h = moments.covariance
        let lambda = LeastSquaresRefit.lambda(ridge: ridge, moments: moments)
        for i in 0 ..< n { h[i * n + i] += lambda }
        var identity = [Double](repeating: 0, count: n * n)
        for i in 0 ..< n { identity[i * n + i] = 1 }
        var inverse = try LeastSquaresRefit.solve(h, n: n, rhsRows: identity, columns: n)
        var w = weight
        var remaining = Set(groups.indices)
        var steps: [Step] = []
        let singletons = groups.allSatisfy { $0.count == 1 }
        while remaining.count > max(keep, 0) {
            // The cheapest remaining group (ties: the lowest index).
            var best: (group: Int, cost: Double, factor: [Double])?
            for g in remaining.sorted() {
                let (cost, factor) = try removalCost(groups[g], w: w, inverse: inverse, outputs: outputs, n: n,
                                                     singleton: singletons)
                if best == nil || cost < best!.cost { best = (g, cost, factor) }
            }
            guard let chosen = best else { break }
            update(groups[chosen.group], factor: chosen.factor, w: &w, inverse: &inverse, outputs: outputs, n: n)
            remaining.remove(chosen.group)
            steps.append(Step(group: chosen.group, cost: chosen.cost))
        }
        return steps
    }

    /// ΔJ of removing `g` now, and ((H⁻¹)_{gg})⁻¹·(H⁻¹)_{g,:} [|g|, n] (the update's right factor).
    static func removalCost(_ g: [Int], w: [Double], inverse: [Double], outputs: Int, n: Int, singleton: Bool) throws
        -> (cost: Double, factor: [Double]) {
        if singleton {
            let j = g[0], d = inverse[j * n + j]
            var norm = 0.0
            for o in 0 ..< outputs { norm += w[o * n + j] * w[o * n + j] }
            guard d > 0 else { return (norm == 0 ? 0 : .infinity, []) }
            return (norm / d, [])  // the factor is built only for the chosen group (`update`)
        }
        let k = g.count
        var block = [Double](repeating: 0, count: k * k)
        for (a, i) in g.enumerated() { for (c, j) in g.enumerated() { block[a * k + c] = inverse[i * n + j] } }
        // Rows of the right-hand side: (H⁻¹)_{g,:}ᵀ, i.e. for each column c of H⁻¹ the |g| entries (H⁻¹)_{g,c}.
        var rhs = [Double](repeating: 0, count: n * k)
        for c in 0 ..< n { for (a, i) in g.enumerated() { rhs[c * k + a] = inverse[i * n + c] } }
        let solved = try LeastSquaresRefit.solve(block, n: k, rhsRows: rhs, columns: n)  // [n, k]
        // ΔJ = tr(W_g · S⁻¹ · W_gᵀ) = Σ_o Σ_a W[o, g_a]·(S⁻¹·W_gᵀ)[a, o], and S⁻¹·(H⁻¹)_{g,g} = I, so
        // (S⁻¹·W_gᵀ) follows from the same solve only for W; solve it directly (|g| small).
        var wg = [Double](repeating: 0, count: outputs * k)
        for o in 0 ..< outputs { for (a, i) in g.enumerated() { wg[o * k + a] = w[o * n + i] } }
        let x = try LeastSquaresRefit.solve(block, n: k, rhsRows: wg, columns: outputs)  // [outputs, k]
        var cost = 0.0
        for i in 0 ..< outputs * k { cost += wg[i] * x[i] }
        var factor = [Double](repeating: 0, count: k * n)
        for c in 0 ..< n { for a in 0 ..< k { factor[a * n + c] = solved[c * k + a] } }
        return (cost, factor)
    }

    /// The OBS update for removing `g`: W ← W − W_{:,g}·F and H⁻¹ ← H⁻¹ − (H⁻¹)_{:,g}·F with F = factor; the
    /// removed rows and columns end at zero (set exactly, not left to rounding).
    static func update(_ g: [Int], factor given: [Double], w: inout [Double], inverse: inout [Double], outputs: Int,
                       n: Int) {
        let k = g.count
        var factor = given
        if factor.isEmpty {  // a single column: F = (H⁻¹)_{j,:} / (H⁻¹)_{jj}
            let j = g[0], d = inverse[j * n + j]
            factor = (0 ..< n).map { d > 0 ? inverse[j * n + $0] / d : 0 }
        }
        var wg = [Double](repeating: 0, count: outputs * k), hg = [Double](repeating: 0, count: n * k)
        for o in 0 ..< outputs { for (a, i) in g.enumerated() { wg[o * k + a] = w[o * n + i] } }
        for r in 0 ..< n { for (a, i) in g.enumerated() { hg[r * k + a] = inverse[r * n + i] } }
        w.withUnsafeMutableBufferPointer { w in
            factor.withUnsafeBufferPointer { f in
                for o in 0 ..< outputs {
                    for a in 0 ..< k {
                        let s = wg[o * k + a]
                        if s == 0 { continue }
                        for c in 0 ..< n { w[o * n + c] -= s * f[a * n + c] }
                    }
                }
            }
        }
        inverse.withUnsafeMutableBufferPointer { h in
            factor.withUnsafeBufferPointer { f in
                for r in 0 ..< n {
                    for a in 0 ..< k {
                        let s = hg[r * k + a]
                        if s == 0 { continue }
                        for c in 0 ..< n { h[r * n + c] -= s * f[a * n + c] }
                    }
                }
            }
        }
        for i in g {
            for o in 0 ..< outputs { w[o * n + i] = 0 }
            for c in 0 ..< n {
                inverse[i * n + c] = 0
                inverse[c * n + i] = 0
            }
        }
    }

    /// Scores for a ranking (higher = kept longer) from a layer's greedy order: the step costs divided by
    /// `scale` (the layer's output variance, so that layers compare), made strictly increasing along the order (a
    /// running maximum, nudged up one ulp per step), so that any threshold removes a prefix of each layer's greedy
    /// order; groups never removed score above every removed one.
    public static func scores(_ steps: [Step], groups: Int, scale: Double) -> [Double] {
        var scores = [Double](repeating: 0, count: groups)
        var running = -Double.greatestFiniteMagnitude
        var removed = Set<Int>()
        for step in steps {
            let cost = step.cost / (scale > 0 ? scale : 1)
            running = max(cost.isFinite ? cost : .greatestFiniteMagnitude / 2, running.nextUp)
            scores[step.group] = running
            removed.insert(step.group)
        }
        for g in 0 ..< groups where !removed.contains(g) {
            running = running.nextUp
            scores[g] = max(running, .greatestFiniteMagnitude / 2)
        }
        return scores
    }
}
