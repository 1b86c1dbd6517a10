import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeRandom
import ViTForgeTrain

/// Scores per group of a channel space (aligned with `ChannelSpace.groups`); higher means more important, kept
/// first. Every criterion sums over all the slices of a group, so a residual channel is scored on everything it
/// touches, not only on one tensor.
public enum Importance {
    public enum Norm: String, Sendable { case l1, l2 }

    /// L1 (Σ|w|) or L2 (√Σw²) of every scalar in the group.
    public static func magnitude(_ space: ChannelSpace, weights: ViTWeights, norm: Norm) -> [Double] {
        space.groups.map { group in
            var total = 0.0
            for slice in group.slices {
                guard let tensor = weights[slice.tensor] else { continue }
                tensor.values.withUnsafeBufferPointer { values in
                    forEachElement(of: slice, shape: tensor.shape) {
                        let w = Double(values[$0])
                        total += norm == .l1 ? abs(w) : w * w
                    }
                }
            }
            return norm == .l1 ? total : total.squareRoot()
        }
    }

    /// First-order Taylor: |Σ w·∂L/∂w| over the group, the first-order change of the loss when the whole group is
    /// zeroed. `gradients` are summed over the calibration batches first (`accumulatedGradients`), so the estimate
    /// is of the loss over all calibration images rather than a sum of per-batch magnitudes.
    public static func taylor(_ space: ChannelSpace, weights: ViTWeights, gradients: [String: [Float]]) -> [Double] {
        space.groups.map { group in
            var total = 0.0
            for slice in group.slices {
                guard let tensor = weights[slice.tensor], let gradient = gradients[slice.tensor] else { continue }
                tensor.values.withUnsafeBufferPointer { values in
                    forEachElement(of: slice, shape: tensor.shape) { total += Double(values[$0]) * Double(gradient[$0]) }
                }
            }
            return abs(total)
        }
    }

    /// Seeded uniform scores (the random baseline); the same seed gives the same scores for the same space.
    public static func random(_ space: ChannelSpace, seed: UInt64) -> [Double] {
        var generator = SplitMix64(seed: seed ^ UInt64(truncatingIfNeeded: space.kind.description.hashStable))
        return space.groups.map { _ in generator.unit() }
    }

    /// d(mean cross-entropy)/d parameter, summed over consecutive batches of the first `limit` calibration images.
    /// In a data-parallel run each rank takes its share of every batch (its mean over the whole batch) and the
    /// sums are added over the ranks: the same gradients as one process, up to summation order.
    public static func accumulatedGradients(of model: VisionTransformer, images: CalibrationImages, limit: Int?,
                                            batchSize: Int, collective: any Collective = Collectives.world)
        throws -> [String: [Float]] {
        let backend = model.backend
        let parallel = collective.size > 1
        try model.zeroGradients()
        try images.forEachBatch(limit: limit, batchSize: batchSize, collective: collective) {
            pixels, labels, count, batchCount in
            _ = try model.crossEntropy(images: backend.makeBuffer(pixels), labels: backend.makeBuffer(labels),
                                       batch: count, meanOver: parallel ? batchCount : nil, backward: true)
        }
        var gradients: [String: [Float]] = [:]
        for spec in model.config.parameterSpecs() {
            guard let buffer = model.gradients[spec.name] else { continue }
            var values = try backend.read(buffer, count: spec.elementCount)
            if parallel { try values.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) } }
            gradients[spec.name] = values
        }
        return gradients
    }

    /// Visits the flat index of every scalar of `slice` in a row-major tensor of `shape`.
    static func forEachElement(of slice: ChannelSlice, shape: [Int], _ body: (Int) -> Void) {
        let outer = shape[..<slice.axis].reduce(1, *)
        let size = shape[slice.axis]
        let inner = shape[(slice.axis + 1)...].reduce(1, *)
        for o in 0..<outer {
            for i in slice.indices {
                let base = (o * size + i) * inner
                for n in 0..<inner { body(base + n) }
            }
        }
    }
}

/// How a ranking compares groups.
public enum RankingScope: String, Sendable {
    /// One list over every space of a family (all blocks): widths end up different per block.
    case global
    /// Each space (block) keeps the same fraction of its own groups.
    case block
}

/// Turns scores into keep-sets: the highest-scoring groups are kept.
public enum Selection {
    /// Keep-sets for `spaces` (all of one family, e.g. every block's MLP) keeping `keepFraction` of their groups.
    /// Global scope ranks all groups together and then rounds each space's count; block scope rounds each space's
    /// own share. `rounding`: each space's count is rounded by it (`WidthRounding`). q/k and v dims keep
    /// the same count in every head of a block (the model stores one width per block): the space's count is split
    /// evenly and each head keeps its own best dims.
    public static func keep(spaces: [ChannelSpace], scores: [[Double]], keepFraction: Double, scope: RankingScope,
                            rounding: WidthRounding = .multiple(1)) throws -> [(SpaceKind, [Int])] {
        guard keepFraction >= 0, keepFraction <= 1, keepFraction.isFinite else {
            throw PruneError.invalidBudget("keep fraction \(keepFraction) must be in [0, 1]")
        }
        try rounding.validate()
        guard spaces.count == scores.count, zip(spaces, scores).allSatisfy({ $0.groups.count == $1.count }) else {
            throw PruneError.planMismatch("one score per group needed")
        }
        var counts: [Int]
        switch scope {
        case .block:
            counts = spaces.map { Int((keepFraction * Double($0.groups.count)).rounded()) }
        case .global:
            let total = spaces.reduce(0) { $0 + $1.groups.count }
            let keepCount = Int((keepFraction * Double(total)).rounded())
            // Descending score; ties go to the earlier space and lower index so the result is deterministic.
            var ranked: [(score: Double, space: Int, index: Int)] = []
            for (s, list) in scores.enumerated() { for (i, score) in list.enumerated() { ranked.append((score, s, i)) } }
            ranked.sort { ($0.score, -$0.space, -$0.index) > ($1.score, -$1.space, -$1.index) }
            counts = [Int](repeating: 0, count: spaces.count)
            for entry in ranked.prefix(keepCount) { counts[entry.space] += 1 }
        }
        return zip(spaces, zip(scores, counts)).map { space, scored in
            let (list, count) = scored
            let size = space.groups.count
            let heads = Set(space.groups.compactMap(\.head)).count
            switch space.kind {
            case .qkDims, .vDims:
                let perHead = size / max(heads, 1)
                let keepPerHead = rounding.rounded(Int((Double(count) / Double(max(heads, 1))).rounded()),
                                                   size: perHead, kind: space.kind)
                let kept = (0..<heads).flatMap { h in
                    topIndices(Array(list[(h * perHead)..<((h + 1) * perHead)]), count: keepPerHead).map { h * perHead + $0 }
                }
                return (space.kind, kept)
            default:
                return (space.kind, topIndices(list, count: rounding.rounded(count, size: size, kind: space.kind)))
            }
        }
    }

    /// Indices of the `count` highest scores, ascending (ties: lower index first).
    static func topIndices(_ scores: [Double], count: Int) -> [Int] {
        scores.indices.sorted { (scores[$0], -$0) > (scores[$1], -$1) }.prefix(count).sorted()
    }
}

extension String {
    /// FNV-1a: Swift's `hashValue` is seeded per process, which would make random pruning irreproducible.
    var hashStable: UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in utf8 { hash = (hash ^ UInt64(byte)) &* 0x0100_0000_01B3 }
        return hash
    }
}
