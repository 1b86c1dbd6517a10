import Dispatch
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport
import ViTForgeTrain

/// The two Lagrange multipliers of Vulcan's post-training (METHODS.md §3.b step 3): λ1 (ℓ1 parts) and λ2 (squared
/// parts), shared by both constraints, scalars on the device that start at 0 and rise by Adam ascent with learning
/// rate ρ — optimizer slots with a negative learning-rate scale and no weight decay, so they are checkpointed and
/// resumed with the model.
final class VulcanMultipliers {
    static let names = ["vulcan.lambda1", "vulcan.lambda2"]
    let backend: Backend
    let values: [Buffer]     // [1] each
    let gradients: [Buffer]  // [1] each: ∂L/∂λ = the constraint's value (≥ 0), written by the penalty term

    init(backend: Backend, lambda1: Float = 0, lambda2: Float = 0) throws {
        self.backend = backend
        values = [try backend.makeBuffer([lambda1]), try backend.makeBuffer([lambda2])]
        gradients = try (0 ..< 2).map { _ in try backend.zeros(1) }
    }

    /// Makes the multipliers optimizer slots: `rho` is their own learning rate; the schedule's `learningRate`
    /// (constant in Vulcan's phase) is what the slot scale divides out.
    func addSlots(to optimizer: AdamW, rho: Double, learningRate: Double) throws {
        for (name, (value, gradient)) in zip(Self.names, zip(values, gradients)) {
            try optimizer.addSlot(name: name, shape: [1], parameter: value, gradient: gradient,
                                  learningRateScale: -rho / learningRate, decays: false)
        }
    }

    /// (λ1, λ2) on the host (read once per step: they scale the penalty's gradient).
    func read() throws -> (Double, Double) {
        (Double(try backend.read(values[0], count: 1)[0]), Double(try backend.read(values[1], count: 1)[0]))
    }
}

/// The constraint values of one step, each normalised as in the loss: CCNC by clusters per block, TNNR by heads.
public struct VulcanConstraintValues: Codable, Equatable, Sendable {
    /// Σ_l (1/C_l) Σ ‖Ŵ1[j] − Ŵ1[anchor]‖₁ and the same with ‖·‖₂².
    public var collapseL1 = 0.0, collapseL2 = 0.0
    /// (1/(H·L)) Σ tail σᵢ and Σ tail σᵢ² of every head's augmented Q and V.
    public var tailL1 = 0.0, tailL2 = 0.0

    public init() {}
}

/// CCNC + TNNR with the shared multipliers: adds `λ1·(ℓ1 parts) + λ2·(squared parts)`'s gradient to the model and
/// each part's value to its multiplier's gradient (the ascent direction). Everything large stays on the device;
/// per step the host reads the two multipliers, a handful of sums and every head's d eigenvalues.
final class VulcanPenalty: TrainingTerm {
    let name = "vulcan_penalty"
    let multipliers: VulcanMultipliers
    private(set) var collapse: [ClusterCollapse] = []
    let tail: TailRankPenalty
    /// The last step's constraint values (the monitor hook records them).
    private(set) var last = VulcanConstraintValues()

    init(multipliers: VulcanMultipliers, config: ViTConfig, clusters: [[VulcanSurgery.Cluster]],
         widths: [VulcanBudget.BlockWidths], backend: Backend) throws {
        self.multipliers = multipliers
        tail = try TailRankPenalty(config: config, widths: widths, backend: backend)
        try setClusters(clusters, config: config, backend: backend)
    }

    /// (Re)builds the index buffers of the clusters (at the start, and from a checkpoint's clusters).
    func setClusters(_ clusters: [[VulcanSurgery.Cluster]], config: ViTConfig, backend: Backend) throws {
        collapse = try clusters.enumerated().map { b, blockClusters in
            try ClusterCollapse(block: b, clusters: blockClusters, width: config.residualWidth, backend: backend)
        }
    }

    func addGradient(_ trainer: Trainer) throws -> Double { try addGradient(model: trainer.model) }

    func addGradient(model: VisionTransformer) throws -> Double {
        let (lambda1, lambda2) = try multipliers.read()
        var values = VulcanConstraintValues()
        for block in collapse {
            let (l1, l2) = try block.addGradient(model: model, lambda1: lambda1, lambda2: lambda2)
            values.collapseL1 += l1
            values.collapseL2 += l2
        }
        (values.tailL1, values.tailL2) = try tail.addGradient(model: model, lambda1: lambda1, lambda2: lambda2)
        last = values
        let backend = multipliers.backend
        try backend.write([Float(values.collapseL1 + values.tailL1)], to: multipliers.gradients[0])
        try backend.write([Float(values.collapseL2 + values.tailL2)], to: multipliers.gradients[1])
        return lambda1 * (values.collapseL1 + values.tailL1) + lambda2 * (values.collapseL2 + values.tailL2)
    }
}

/// One block's CCNC: every non-anchor neuron's augmented fc1 row pulled towards its anchor's and back (both ends
/// move), `(1/C)·Σ λ1‖Δ‖₁ + λ2‖Δ‖₂²` with Δ = row − anchor row. On the device: gathers, the sign and linear parts of
/// the gradient, a scatter onto the members and a segment sum onto the anchors (which repeat).
final class ClusterCollapse {
    /// fc1.weight (columns D) and fc1.bias (1 column) are the two parts of the augmented row.
    struct Part {
        let parameter: String
        let columns: Int
        let memberElements: Buffer   // [pairs·columns] Int32: element of each member's row
        let anchorElements: Buffer   // [pairs·columns] Int32: element of its anchor's row
        let anchorTargets: Buffer    // [anchors·columns] Int32: each distinct anchor's elements
        let segmentOffsets: Buffer   // [anchors·columns + 1] Int32
        let segmentMembers: Buffer   // [pairs·columns] Int32: positions in `difference` of each anchor element's pairs
        let difference: Buffer       // [pairs·columns]
        let scratch: Buffer          // [pairs·columns]
        let anchorGradient: Buffer   // [anchors·columns]
    }

    let backend: Backend
    let pairs: Int, anchors: Int
    /// 1 / (clusters with more than one member).
    let normaliser: Double
    let parts: [Part]

    init(block b: Int, clusters: [VulcanSurgery.Cluster], width: Int, backend: Backend) throws {
        self.backend = backend
        let merged = clusters.filter { $0.members.count > 1 }
        var memberRows: [Int] = [], anchorRows: [Int] = [], anchorOf: [Int] = []
        for (a, cluster) in merged.enumerated() {
            for member in cluster.members where member != cluster.anchor {
                memberRows.append(member)
                anchorRows.append(cluster.anchor)
                anchorOf.append(a)
            }
        }
        let pairs = memberRows.count
        self.pairs = pairs
        anchors = merged.count
        normaliser = merged.isEmpty ? 0 : 1 / Double(merged.count)
        parts = try [("blocks.\(b).mlp.fc1.weight", width), ("blocks.\(b).mlp.fc1.bias", 1)].map { name, columns in
            func elements(_ rows: [Int]) -> [Int32] { rows.flatMap { r in (0 ..< columns).map { Int32(r * columns + $0) } } }
            var members = [[Int32]](repeating: [], count: merged.count * columns)
            for (p, a) in anchorOf.enumerated() {
                for c in 0 ..< columns { members[a * columns + c].append(Int32(p * columns + c)) }
            }
            let offsets = members.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1.count)) }
            let count = max(1, pairs * columns)
            return Part(parameter: name, columns: columns,
                        memberElements: try backend.makeBuffer(elements(memberRows)),
                        anchorElements: try backend.makeBuffer(elements(anchorRows)),
                        anchorTargets: try backend.makeBuffer(elements(merged.map(\.anchor))),
                        segmentOffsets: try backend.makeBuffer(offsets),
                        segmentMembers: try backend.makeBuffer(members.flatMap { $0 }),
                        difference: try backend.allocate(count), scratch: try backend.allocate(count),
                        anchorGradient: try backend.allocate(max(1, merged.count * columns)))
        }
    }

    /// Adds the block's gradient; returns its normalised (ℓ1, squared ℓ2) values.
    func addGradient(model: VisionTransformer, lambda1: Double, lambda2: Double) throws -> (Double, Double) {
        guard pairs > 0 else { return (0, 0) }
        var l1 = 0.0, l2 = 0.0
        for part in parts {
            guard let parameter = model.parameters[part.parameter], let gradient = model.gradients[part.parameter] else {
                throw PruneError.planMismatch("vulcan: the model has no \(part.parameter)")
            }
            let count = pairs * part.columns
            try backend.gather(src: parameter, indices: part.memberElements, dst: part.difference, count: count)
            try backend.gather(src: parameter, indices: part.anchorElements, dst: part.scratch, count: count)
            try backend.axpy(alpha: -1, x: part.scratch, y: part.difference, count: count)
            l1 += try backend.sumOfAbs(part.difference, count: count)
            l2 += try backend.sumOfSquares(part.difference, count: count)
            // ∂/∂member = (λ1·sign(Δ) + 2λ2·Δ)/C; the anchor gets minus the sum over its members.
            try backend.fill(part.scratch, value: 0, offset: 0, count: count)
            try backend.addScaledSign(part.difference, alpha: Float(lambda1 * normaliser), y: part.scratch, count: count)
            try backend.axpy(alpha: Float(2 * lambda2 * normaliser), x: part.difference, y: part.scratch, count: count)
            try backend.scatterAdd(src: part.scratch, indices: part.memberElements, dst: gradient, count: count)
            let anchorCount = anchors * part.columns
            try backend.fill(part.anchorGradient, value: 0, offset: 0, count: anchorCount)
            try backend.segmentSum(part.scratch, offsets: part.segmentOffsets, members: part.segmentMembers,
                                   dst: part.anchorGradient, segments: anchorCount)
            try backend.scale(part.anchorGradient, by: -1, count: anchorCount)
            try backend.scatterAdd(src: part.anchorGradient, indices: part.anchorTargets, dst: gradient,
                                   count: anchorCount)
        }
        return (l1 * normaliser, l2 * normaliser)
    }
}

/// TNNR: `(1/(H·L)) Σ λ1·Σ_tail σᵢ + λ2·Σ_tail σᵢ²` over every head's augmented Ŵ_Q (tail beyond the block's qk
/// dim) and Ŵ_V (beyond its v dim). Per step, every head's Gram matrix `G = Ŵ·Ŵᵀ` (strided-batched GEMMs, d×d)
/// goes through one batched eigen-decomposition `G = Uᵀ·Λ·U` (rows of U = eigenvectors); with `cᵢ = λ1/σᵢ + 2λ2` on
/// the tail (0 elsewhere) the gradient is `Uᵀ·diag(c)·U·Ŵ` (∂σᵢ/∂Ŵ = uᵢuᵢᵀŴ/σᵢ, ∂σᵢ²/∂Ŵ = 2uᵢuᵢᵀŴ), formed as
/// `Y = U·Ŵ`, rows scaled by c, `Uᵀ·Y` added to the gradient.
final class TailRankPenalty {
    /// One group of heads of the same width d: (block, q or v) segments of the batch.
    struct Segment {
        let block: Int
        let firstRow: Int  // the first qkv row of this segment's heads
        let heads: Int
        let kept: Int      // the head's dims that stay (qk or v)
        let matrixOffset: Int  // the segment's first matrix in the group's batch
    }

    struct Group {
        let dim: Int
        let segments: [Segment]
        let matrices: Int
        let gram: Buffer         // [matrices, d, d]
        let values: Buffer       // [matrices, d]
        let vectors: Buffer      // [matrices, d, d]
        let coefficients: Buffer // [matrices, d]
        let projected: Buffer    // [matrices, d, D]
        let projectedBias: Buffer  // [matrices, d]
    }

    /// σ below this (relative to nothing: the weights are O(1)) is clamped in 1/σ, the ℓ1 term's unstable end.
    static let sigmaFloor = 1e-4
    let backend: Backend
    let width: Int
    let bias: Bool
    let normaliser: Double
    let groups: [Group]
    /// Wall time of the batched eigen-decompositions so far (with their eigenvalue read-back, which waits for them
    /// anyway), for the SVD kernels' share of a step in the report.
    private(set) var eigenSeconds = 0.0

    init(config: ViTConfig, widths: [VulcanBudget.BlockWidths], backend: Backend) throws {
        self.backend = backend
        let width = config.residualWidth
        self.width = width
        bias = config.qkvBias
        let totalHeads = config.blocks.reduce(0) { $0 + $1.heads }
        normaliser = totalHeads > 0 ? 1 / Double(totalHeads) : 0
        var byDim: [Int: [(block: Int, firstRow: Int, heads: Int, kept: Int)]] = [:]
        for (b, block) in config.blocks.enumerated() where block.heads > 0 {
            guard block.hasUniformHeads else {
                throw PruneError.planMismatch("vulcan: block \(b) has heads of different widths")
            }
            let layout = QKVLayout(block)
            byDim[block.qkDim, default: []].append((b, layout.qRow(head: 0, dim: 0), block.heads, widths[b].qkDim))
            byDim[block.vDim, default: []].append((b, layout.vRow(head: 0, dim: 0), block.heads, widths[b].vDim))
        }
        groups = try byDim.keys.sorted().map { dim in
            var offset = 0
            let segments = byDim[dim]!.map { s -> Segment in
                defer { offset += s.heads }
                return Segment(block: s.block, firstRow: s.firstRow, heads: s.heads, kept: s.kept, matrixOffset: offset)
            }
            let matrices = offset
            return Group(dim: dim, segments: segments, matrices: matrices,
                         gram: try backend.allocate(matrices * dim * dim), values: try backend.allocate(matrices * dim),
                         vectors: try backend.allocate(matrices * dim * dim),
                         coefficients: try backend.allocate(matrices * dim),
                         projected: try backend.allocate(matrices * dim * config.residualWidth),
                         projectedBias: try backend.allocate(matrices * dim))
        }
    }

    /// Every head's Gram eigenvalues (ascending, σᵢ²) of the current model, per group: for tests and reports.
    func eigenvalues(model: VisionTransformer) throws -> [[Float]] {
        try groups.map { group in
            try decompose(group, model: model)
            return try backend.read(group.values, count: group.matrices * group.dim)
        }
    }

    private func buffers(_ model: VisionTransformer, block: Int) throws -> (weight: Buffer, weightGradient: Buffer,
                                                                           bias: Buffer?, biasGradient: Buffer?) {
        let prefix = "blocks.\(block).attn.qkv."
        guard let weight = model.parameters[prefix + "weight"], let gradient = model.gradients[prefix + "weight"] else {
            throw PruneError.planMismatch("vulcan: the model has no \(prefix)weight")
        }
        return (weight, gradient, model.parameters[prefix + "bias"], model.gradients[prefix + "bias"])
    }

    /// Every matrix of the group: G = Ŵ·Ŵᵀ = W·Wᵀ + b·bᵀ, then its eigen-decomposition.
    private func decompose(_ group: Group, model: VisionTransformer) throws {
        try formGrams(group, model: model)
        try backend.symmetricEigen(group.gram, n: group.dim, batch: group.matrices, values: group.values,
                                   vectors: group.vectors)
    }

    private func formGrams(_ group: Group, model: VisionTransformer) throws {
        let d = group.dim
        for segment in group.segments {
            let (weight, _, biasBuffer, _) = try buffers(model, block: segment.block)
            var spec = GemmSpec(m: d, n: d, k: width, transB: true)
            spec.offsetA = segment.firstRow * width
            spec.offsetB = segment.firstRow * width
            spec.strideA = d * width
            spec.strideB = d * width
            spec.offsetC = segment.matrixOffset * d * d
            spec.strideC = d * d
            spec.batch = segment.heads
            try backend.gemmStridedBatched(spec, a: weight, b: weight, c: group.gram)
            if bias, let biasBuffer {
                var outer = GemmSpec(m: d, n: d, k: 1, transB: true, beta: 1)
                outer.offsetA = segment.firstRow
                outer.offsetB = segment.firstRow
                outer.strideA = d
                outer.strideB = d
                outer.offsetC = segment.matrixOffset * d * d
                outer.strideC = d * d
                outer.batch = segment.heads
                try backend.gemmStridedBatched(outer, a: biasBuffer, b: biasBuffer, c: group.gram)
            }
        }
    }

    /// `decompose`, with the eigen-decomposition timed apart: the device first finishes the Gram products.
    private func timedDecompose(_ group: Group, model: VisionTransformer) throws -> [Float] {
        try formGrams(group, model: model)
        try backend.synchronize()
        let start = DispatchTime.now().uptimeNanoseconds
        try backend.symmetricEigen(group.gram, n: group.dim, batch: group.matrices, values: group.values,
                                   vectors: group.vectors)
        let values = try backend.read(group.values, count: group.matrices * group.dim)
        eigenSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        return values
    }

    /// Adds the gradient; returns the normalised (Σ tail σ, Σ tail σ²).
    func addGradient(model: VisionTransformer, lambda1: Double, lambda2: Double) throws -> (Double, Double) {
        var l1 = 0.0, l2 = 0.0
        for group in groups {
            let d = group.dim
            let eigenvalues = try timedDecompose(group, model: model)
            var coefficients = [Float](repeating: 0, count: group.matrices * d)
            for segment in group.segments {
                for m in segment.matrixOffset ..< segment.matrixOffset + segment.heads {
                    // Ascending: the tail is the first d − kept.
                    for i in 0 ..< max(0, d - segment.kept) {
                        let sigma = Double(max(eigenvalues[m * d + i], 0)).squareRoot()
                        l1 += sigma
                        l2 += sigma * sigma
                        coefficients[m * d + i] = Float(normaliser * (lambda1 / max(sigma, Self.sigmaFloor) + 2 * lambda2))
                    }
                }
            }
            try backend.write(coefficients, to: group.coefficients)
            // Y = U·Ŵ for every segment, its rows scaled by c in one call over the group, then Uᵀ·Y added.
            for (columns, projected, isBias) in [(width, group.projected, false), (1, group.projectedBias, true)] {
                guard !isBias || bias else { continue }
                var targets: [(Segment, Buffer)] = []
                for segment in group.segments {
                    let buffers = try buffers(model, block: segment.block)
                    guard let source = isBias ? buffers.bias : buffers.weight,
                          let gradient = isBias ? buffers.biasGradient : buffers.weightGradient else { continue }
                    try backend.gemmStridedBatched(projection(group, segment, columns: columns, back: false),
                                                   a: group.vectors, b: source, c: projected)
                    targets.append((segment, gradient))
                }
                try backend.scaleRows(projected, mask: group.coefficients, out: projected, rows: group.matrices * d,
                                      cols: columns)
                for (segment, gradient) in targets {
                    try backend.gemmStridedBatched(projection(group, segment, columns: columns, back: true),
                                                   a: group.vectors, b: projected, c: gradient)
                }
            }
        }
        return (l1 * normaliser, l2 * normaliser)
    }

    /// The segment's `Y = U·Ŵ` (forward: U [d, d] per head times its rows of Ŵ [d, columns] into Y) or
    /// `gradient += Uᵀ·Y` (back), one strided-batched GEMM over its heads.
    private func projection(_ group: Group, _ segment: Segment, columns: Int, back: Bool) -> GemmSpec {
        let d = group.dim
        var spec = GemmSpec(m: d, n: columns, k: d, transA: back, beta: back ? 1 : 0)
        spec.offsetA = segment.matrixOffset * d * d
        spec.strideA = d * d
        let headRows = segment.firstRow * columns, projectedRows = segment.matrixOffset * d * columns
        spec.offsetB = back ? projectedRows : headRows
        spec.offsetC = back ? headRows : projectedRows
        spec.strideB = d * columns
        spec.strideC = d * columns
        spec.batch = segment.heads
        return spec
    }
}
