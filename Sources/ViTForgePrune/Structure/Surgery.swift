import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

/// Every pruning failure, as one line.
public enum PruneError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A keep-set that would leave a space with nothing (0 heads, 0 MLP neurons, 0 residual channels, a head with
    /// 0 q/k or v dims). The model has no way to represent an empty block; a method that wants one gone must remove
    /// the block, which ViTForge does not do yet.
    case emptySpace(String)
    case indexOutOfRange(String)
    case planMismatch(String)
    case invalidBudget(String)
    case invalidCalibration(String)

    public var description: String {
        switch self {
        case .emptySpace(let what): return "refusing to empty \(what); keep at least one, or remove the block"
        case .indexOutOfRange(let what): return "keep index out of range: \(what)"
        case .planMismatch(let what): return "keep plan does not fit the model: \(what)"
        case .invalidBudget(let what): return "invalid budget: \(what)"
        case .invalidCalibration(let what): return "calibration: \(what)"
        }
    }
}

/// What one kept head keeps: its original index and, in its original numbering, the q/k dims and v dims kept.
public struct HeadKeep: Equatable, Sendable {
    public var head: Int
    public var qkDims: [Int]
    public var vDims: [Int]

    public init(head: Int, qkDims: [Int], vDims: [Int]) {
        self.head = head
        self.qkDims = qkDims
        self.vDims = vDims
    }
}

public struct BlockKeep: Equatable, Sendable {
    /// Kept heads in original order.
    public var heads: [HeadKeep]
    /// Kept MLP hidden neurons (original indices, ascending).
    public var mlpHidden: [Int]
    /// The pruned block's attention scale; nil keeps the original's (REFERENCE.md §1.3: a pruned q/k width must
    /// not silently change the softmax temperature).
    public var attentionScale: Double?

    public init(heads: [HeadKeep], mlpHidden: [Int], attentionScale: Double? = nil) {
        self.heads = heads
        self.mlpHidden = mlpHidden
        self.attentionScale = attentionScale
    }
}

/// Keep-sets in every channel space: what surgery keeps. Indices are always in the original model's numbering.
public struct KeepPlan: Equatable, Sendable {
    public var residual: [Int]
    public var blocks: [BlockKeep]

    public init(residual: [Int], blocks: [BlockKeep]) {
        self.residual = residual
        self.blocks = blocks
    }

    /// Keeps everything of `config`.
    public init(keepingAllOf config: ViTConfig) {
        residual = Array(0..<config.residualWidth)
        blocks = config.blocks.map { block in
            BlockKeep(heads: (0..<block.heads).map {
                HeadKeep(head: $0, qkDims: Array(0..<block.qkDims[$0]), vDims: Array(0..<block.vDims[$0]))
            }, mlpHidden: Array(0..<block.mlpHidden))
        }
    }

    /// Restricts one space to `keepIndices`, numbered as that space's groups (`ChannelGroup.index`): channels,
    /// heads, neurons, or the head's offset + d for q/k and v dims of `config` (the unpruned model; `head·dim + d`
    /// when its heads are equal).
    public mutating func keep(_ keepIndices: [Int], in kind: SpaceKind, of config: ViTConfig) throws {
        let kept = Set(keepIndices)
        func check(_ bound: Int) throws {
            if let bad = keepIndices.first(where: { $0 < 0 || $0 >= bound }) {
                throw PruneError.indexOutOfRange("\(kind): \(bad) (has \(bound))")
            }
        }
        switch kind {
        case .residual:
            try check(config.residualWidth)
            residual = residual.filter(kept.contains)
        case .heads(let b):
            try check(config.blocks[b].heads)
            blocks[b].heads = blocks[b].heads.filter { kept.contains($0.head) }
        case .qkDims(let b):
            let layout = QKVLayout(config.blocks[b])
            try check(layout.totalQK)
            for i in blocks[b].heads.indices {
                let offset = layout.qkOffsets[blocks[b].heads[i].head]
                blocks[b].heads[i].qkDims = blocks[b].heads[i].qkDims.filter { kept.contains(offset + $0) }
            }
        case .vDims(let b):
            let layout = QKVLayout(config.blocks[b])
            try check(layout.totalV)
            for i in blocks[b].heads.indices {
                let offset = layout.vOffsets[blocks[b].heads[i].head]
                blocks[b].heads[i].vDims = blocks[b].heads[i].vDims.filter { kept.contains(offset + $0) }
            }
        case .mlpHidden(let b):
            try check(config.blocks[b].mlpHidden)
            blocks[b].mlpHidden = blocks[b].mlpHidden.filter(kept.contains)
        }
    }

    /// The configuration surgery produces from `config` (per-block widths, original attention scales).
    public func prunedConfig(of config: ViTConfig) throws -> ViTConfig {
        guard blocks.count == config.depth else {
            throw PruneError.planMismatch("\(blocks.count) blocks planned, model has \(config.depth)")
        }
        try Self.checkIndices(residual, bound: config.residualWidth, what: "residual")
        if residual.isEmpty { throw PruneError.emptySpace("the residual stream") }
        var result = config
        result.residualWidth = residual.count
        for (b, (keep, block)) in zip(blocks, config.blocks).enumerated() {
            if keep.mlpHidden.isEmpty { throw PruneError.emptySpace("block \(b)'s MLP") }
            try Self.checkIndices(keep.mlpHidden, bound: block.mlpHidden, what: "block \(b) MLP")
            try Self.checkIndices(keep.heads.map(\.head), bound: block.heads, what: "block \(b) heads")
            for head in keep.heads {
                // Without q/k dims a head's scores are all 0, so it still adds the mean of its values: no smaller
                // model computes that.
                if head.qkDims.isEmpty && !head.vDims.isEmpty {
                    throw PruneError.emptySpace("block \(b) head \(head.head)'s q/k dims while it keeps v dims")
                }
                try Self.checkIndices(head.qkDims, bound: block.qkDims[head.head],
                                      what: "block \(b) head \(head.head) q/k dims")
                try Self.checkIndices(head.vDims, bound: block.vDims[head.head],
                                      what: "block \(b) head \(head.head) v dims")
            }
            // A block whose heads are all gone keeps proj's bias as its attention branch.
            let heads = survivingHeads(b)
            result.blocks[b] = BlockConfig(qkDims: heads.map(\.qkDims.count), vDims: heads.map(\.vDims.count),
                                           mlpHidden: keep.mlpHidden.count,
                                           attentionScale: keep.attentionScale ?? block.attentionScale)
        }
        return result
    }

    /// The heads of block `b` that remain in the pruned model: a head without v dims adds nothing to the block's
    /// output, so it disappears with its q/k dims.
    func survivingHeads(_ b: Int) -> [HeadKeep] { blocks[b].heads.filter { !$0.vDims.isEmpty } }

    /// Kept indices along an axis of the given role (nil: keep all, for `fixed`).
    func keepIndices(along role: AxisRole, of config: ViTConfig) -> [Int]? {
        switch role {
        case .fixed: return nil
        case .residual: return residual
        case .mlpHidden(let b): return blocks[b].mlpHidden
        case .qkvFeatures(let b):
            let layout = QKVLayout(config.blocks[b])
            let heads = survivingHeads(b)
            return heads.flatMap { h in h.qkDims.map { layout.qRow(head: h.head, dim: $0) } }
                + heads.flatMap { h in h.qkDims.map { layout.kRow(head: h.head, dim: $0) } }
                + heads.flatMap { h in h.vDims.map { layout.vRow(head: h.head, dim: $0) } }
        case .mergedValues(let b):
            let layout = QKVLayout(config.blocks[b])
            return survivingHeads(b).flatMap { h in h.vDims.map { layout.mergedColumn(head: h.head, dim: $0) } }
        }
    }

    private static func checkIndices(_ indices: [Int], bound: Int, what: String) throws {
        var previous = -1
        for index in indices {
            if index < 0 || index >= bound { throw PruneError.indexOutOfRange("\(what): \(index) (has \(bound))") }
            if index <= previous { throw PruneError.planMismatch("\(what): indices must be ascending and distinct") }
            previous = index
        }
    }
}

/// Builds the physically smaller model a keep plan describes. Every tensor axis is cut by the keep-set of its role
/// (`parameterAxes()`), so surgery needs no per-tensor code. Compensations a method adds (VBP's bias fold) are
/// applied to the full weights before surgery; surgery itself only removes.
public enum Surgery {
    public static func prune(_ weights: ViTWeights, plan: KeepPlan) throws -> ViTWeights {
        let config = weights.config
        let pruned = try plan.prunedConfig(of: config)
        var tensors: [String: HostTensor] = [:]
        for parameter in try config.parameterAxes() {
            guard let tensor = weights[parameter.name] else {
                throw PruneError.planMismatch("weights have no \(parameter.name)")
            }
            let keep = parameter.roles.map { plan.keepIndices(along: $0, of: config) }
            let shape = zip(parameter.shape, keep).map { $1?.count ?? $0 }
            tensors[parameter.name] = HostTensor(shape: shape,
                                                 values: gather(tensor.values, shape: parameter.shape, keep: keep))
        }
        return try ViTWeights(config: pruned, tensors: tensors)
    }

    /// For every parameter `plan` cuts, the index in the unpruned tensor of each element of the pruned one (what
    /// `Trainer.replaceModel` slices the optimizer's moments with when a method prunes while it trains).
    public static func elementSources(_ config: ViTConfig, plan: KeepPlan) throws -> [String: [Int]] {
        _ = try plan.prunedConfig(of: config)
        var sources: [String: [Int]] = [:]
        for parameter in try config.parameterAxes() {
            let keep = parameter.roles.map { plan.keepIndices(along: $0, of: config) }
            guard keep.contains(where: { $0 != nil }) else { continue }
            let count = parameter.shape.reduce(1, *)
            sources[parameter.name] = gather(Array(0..<count), shape: parameter.shape, keep: keep)
        }
        return sources
    }

    /// The sub-tensor of `values` (row-major, `shape`) at the kept indices of every axis (nil: all of that axis).
    static func gather<Element>(_ values: [Element], shape: [Int], keep: [[Int]?]) -> [Element] {
        let axes = keep.enumerated().map { $0.element ?? Array(0..<shape[$0.offset]) }
        var strides = [Int](repeating: 1, count: shape.count)
        for axis in stride(from: shape.count - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
        var out: [Element] = []
        out.reserveCapacity(axes.reduce(1) { $0 * $1.count })
        guard !shape.isEmpty else { return values }
        values.withUnsafeBufferPointer { source in
            func walk(_ axis: Int, _ offset: Int) {
                if axis == shape.count - 1 {
                    for i in axes[axis] { out.append(source[offset + i]) }
                    return
                }
                for i in axes[axis] { walk(axis + 1, offset + i * strides[axis]) }
            }
            walk(0, 0)
        }
        return out
    }
}
