import ViTForgeFormats
import ViTForgeModel

/// Vulcan's final surgery (METHODS.md §3.b step 4), in float64: every MLP cluster merged into its anchor (the
/// anchor's fc1 row and bias, the members' fc2 columns summed), every head's attention re-factorised by the SVD of
/// its augmented products to the block's q·k and v·o dims, the compensating `√(r)·scale` folded into W_Q and the new
/// scale `r^-1/2` recorded per block. Exact when the constraints hold: cluster members equal their anchor, and
/// rank(Ŵ_Qᵀ·Ŵ_K) ≤ qk, rank(Ŵ_Vᵀ·W_O) ≤ v. `trimHead` slices the classifier to the given classes and records their
/// ids in the config.
public enum VulcanSurgery {
    /// One MLP cluster: its neurons (ascending) and the one that stays (the highest activation score).
    public struct Cluster: Codable, Equatable, Sendable {
        public var anchor: Int
        public var members: [Int]

        public init(anchor: Int, members: [Int]) {
            self.anchor = anchor
            self.members = members
        }
    }

    public static func apply(_ parameters: [String: [Double]], config: ViTConfig, clusters: [[Cluster]],
                             widths: [VulcanBudget.BlockWidths], trimHead: [Int]? = nil) throws
        -> (config: ViTConfig, parameters: [String: [Double]]) {
        guard clusters.count == config.depth, widths.count == config.depth else {
            throw PruneError.planMismatch("vulcan: \(clusters.count) cluster lists and \(widths.count) widths for "
                                          + "\(config.depth) blocks")
        }
        var result = parameters
        var newConfig = config
        let width = config.residualWidth
        for (b, block) in config.blocks.enumerated() {
            guard block.hasUniformHeads else {
                throw PruneError.planMismatch("vulcan: block \(b) has heads of different widths")
            }
            let prefix = "blocks.\(b)."
            let target = widths[b]
            guard target.qkDim >= 1, target.qkDim <= block.qkDim, target.vDim >= 1, target.vDim <= block.vDim,
                  clusters[b].count == target.mlpHidden else {
                throw PruneError.planMismatch("vulcan: block \(b) widths \(target) do not fit \(block) and "
                                              + "\(clusters[b].count) clusters")
            }
            // MLP: merge.
            let hidden = block.mlpHidden
            let fc1 = parameters[prefix + "mlp.fc1.weight"] ?? [], fc1Bias = parameters[prefix + "mlp.fc1.bias"] ?? []
            let fc2 = parameters[prefix + "mlp.fc2.weight"] ?? []
            let kept = clusters[b].count
            var newFC1 = [Double](), newFC1Bias = [Double](), newFC2 = [Double](repeating: 0, count: width * kept)
            for (k, cluster) in clusters[b].enumerated() {
                newFC1 += fc1[cluster.anchor * width ..< (cluster.anchor + 1) * width]
                newFC1Bias.append(fc1Bias[cluster.anchor])
                for row in 0 ..< width {
                    newFC2[row * kept + k] = cluster.members.reduce(0) { $0 + fc2[row * hidden + $1] }
                }
            }
            result[prefix + "mlp.fc1.weight"] = newFC1
            result[prefix + "mlp.fc1.bias"] = newFC1Bias
            result[prefix + "mlp.fc2.weight"] = newFC2

            // Attention: per head, SVD re-factorisation of the augmented products.
            let heads = block.heads, r = target.qkDim, rv = target.vDim
            let fold = block.attentionScale * Double(r).squareRoot()  // = √(r/d) for the default scale d^-1/2
            var q = [[Double]](), k = [[Double]](), v = [[Double]]()  // rows of D + 1
            var o = [[Double]]()  // per head: rv rows of D
            for head in VulcanBudget.headMatrices(parameters, config: config, block: b) {
                let qkSVD = try Matrix64.productSVD(head.q, head.k)
                let voSVD = try Matrix64.productSVD(head.v, head.o)
                for i in 0 ..< r {
                    let root = i < qkSVD.s.count ? qkSVD.s[i].squareRoot() : 0
                    q.append((0 ... width).map { i < qkSVD.s.count ? qkSVD.u[$0, i] * root * fold : 0 })
                    k.append((0 ... width).map { i < qkSVD.s.count ? qkSVD.vt[i, $0] * root : 0 })
                }
                for i in 0 ..< rv {
                    let root = i < voSVD.s.count ? voSVD.s[i].squareRoot() : 0
                    v.append((0 ... width).map { i < voSVD.s.count ? voSVD.u[$0, i] * root : 0 })
                    o.append((0 ..< width).map { i < voSVD.s.count ? voSVD.vt[i, $0] * root : 0 })
                }
            }
            let rows = q + k + v
            result[prefix + "attn.qkv.weight"] = rows.flatMap { $0[0 ..< width] }
            if config.qkvBias { result[prefix + "attn.qkv.bias"] = rows.map { $0[width] } }
            let projColumns = heads * rv
            var proj = [Double](repeating: 0, count: width * projColumns)
            for (column, row) in o.enumerated() {
                for j in 0 ..< width { proj[j * projColumns + column] = row[j] }
            }
            result[prefix + "attn.proj.weight"] = proj
            newConfig.blocks[b] = BlockConfig(heads: heads, qkDim: r, vDim: rv, mlpHidden: kept,
                                              attentionScale: 1 / Double(r).squareRoot())
        }
        if let trimHead { try trim(&result, config: &newConfig, to: trimHead) }
        return (newConfig, result)
    }

    /// The classifier's rows of `classes` (the data set's ids), in that order; the config records the ids.
    static func trim(_ parameters: inout [String: [Double]], config: inout ViTConfig, to classes: [Int]) throws {
        let width = config.residualWidth
        let outputs = try classes.map { id -> Int in
            guard let output = (0 ..< config.classes).first(where: { config.classId(ofOutput: $0) == id }) else {
                throw PruneError.planMismatch("--trim-head: the model has no output for class \(id)")
            }
            return output
        }
        for name in ["head", "head_dist"] {
            guard let weight = parameters[name + ".weight"], let bias = parameters[name + ".bias"] else { continue }
            parameters[name + ".weight"] = outputs.flatMap { weight[$0 * width ..< ($0 + 1) * width] }
            parameters[name + ".bias"] = outputs.map { bias[$0] }
        }
        config.classes = classes.count
        config.classIds = classes
        // Names follow their outputs, as the classifier's rows do.
        config.classNames = config.classNames.map { names in outputs.map { names[$0] } }
    }

    /// The float32 model through the float64 surgery.
    public static func apply(_ weights: ViTWeights, clusters: [[Cluster]], widths: [VulcanBudget.BlockWidths],
                             trimHead: [Int]? = nil) throws -> ViTWeights {
        let (config, parameters) = try apply(doubles(weights), config: weights.config, clusters: clusters,
                                             widths: widths, trimHead: trimHead)
        var tensors: [String: HostTensor] = [:]
        for spec in config.parameterSpecs() {
            guard let values = parameters[spec.name] else { throw PruneError.planMismatch("vulcan: no \(spec.name)") }
            tensors[spec.name] = HostTensor(shape: spec.shape, values: values.map { Float($0) })
        }
        return try ViTWeights(config: config, tensors: tensors)
    }

    static func doubles(_ weights: ViTWeights) -> [String: [Double]] {
        weights.tensors.mapValues { $0.values.map(Double.init) }
    }
}
