import ViTForgeDevice
import ViTForgeFormats

/// Soft token masks (ViT-Slim's token search, METHODS.md §2.b): per block one multiplier per token position, applied
/// to the LayerNorm outputs that feed that block's attention and its MLP (the same values for both), for every image
/// of the batch. Backward adds `d loss / d value` into each mask's gradient: per row the dot product of the
/// un-masked LayerNorm output with the masked output's gradient, summed over the batch.
///
/// The values are the caller's (ViT-Slim keeps `tanh(ρ)` there); the model only broadcasts them over the batch
/// (a gather into one multiplier per row) and reduces the row gradients back (a segment sum). A model with token
/// sets does not take token masks: the search runs on the full sequence.
final class TokenMaskPlan {
    let rows: Int
    let width: Int
    private let rowTokens: Buffer      // [rows] Int32: row r's token position
    private let segmentOffsets: Buffer // [tokens + 1] Int32
    private let segmentMembers: Buffer // [rows] Int32: the rows of each position, position-major
    private let tokens: Int
    /// Per block, the multiplier of every row (gathered from the block's mask before each forward).
    private let rowMasks: [Buffer]
    /// Per block, the two LayerNorm outputs before the mask (training layout only: backward reads them).
    private let rawNorms: [(Buffer, Buffer)]
    /// d loss / d row multiplier, shared by the blocks (one block's backward at a time).
    private let rowGradient: Buffer?

    init(_ backend: Backend, config: ViTConfig, batch: Int, keepsActivations: Bool) throws {
        tokens = config.tokens
        let rows = batch * config.tokens, width = config.residualWidth
        self.rows = rows
        self.width = width
        rowTokens = try backend.makeBuffer((0..<rows).map { Int32($0 % config.tokens) })
        segmentOffsets = try backend.makeBuffer((0...config.tokens).map { Int32($0 * batch) })
        segmentMembers = try backend.makeBuffer((0..<config.tokens).flatMap { t in
            (0..<batch).map { Int32($0 * config.tokens + t) }
        })
        rowMasks = try (0..<config.depth).map { _ in try backend.allocate(rows) }
        rawNorms = keepsActivations
            ? try (0..<config.depth).map { _ in (try backend.allocate(rows * width), try backend.allocate(rows * width)) }
            : []
        rowGradient = keepsActivations ? try backend.allocate(rows) : nil
    }

    /// Spreads every block's mask values over the rows (before a forward: the values change every step).
    func broadcast(_ backend: Backend, masks: [ChannelMask]) throws {
        for (mask, rowMask) in zip(masks, rowMasks) {
            try backend.gather(src: mask.values, indices: rowTokens, dst: rowMask, count: rows)
        }
    }

    /// Multiplies block `block`'s LayerNorm output `normed` [rows, width] (the attention's, `second` false, or the
    /// MLP's) by its row multipliers, keeping the un-masked output for backward.
    func apply(_ backend: Backend, block: Int, second: Bool, normed: Buffer) throws {
        if !rawNorms.isEmpty {
            let raw = second ? rawNorms[block].1 : rawNorms[block].0
            try backend.copy(normed, srcOffset: 0, to: raw, dstOffset: 0, count: rows * width)
        }
        try backend.scaleRows(normed, mask: rowMasks[block], out: normed, rows: rows, cols: width)
    }

    /// Starts block `block`'s backward: no row gradient yet.
    func beginBackward(_ backend: Backend) throws {
        guard let rowGradient else { return }
        try backend.fill(rowGradient, value: 0, offset: 0, count: rows)
    }

    /// From d(masked output) `dNormed` (overwritten with d(un-masked output)): the row multipliers' gradient, then
    /// the gradient through the multiplication.
    func backward(_ backend: Backend, block: Int, second: Bool, dNormed: Buffer) throws {
        guard let rowGradient else { return }
        let raw = second ? rawNorms[block].1 : rawNorms[block].0
        try backend.maskGradientRows(x: raw, dY: dNormed, dMask: rowGradient, rows: rows, cols: width)
        try backend.scaleRows(dNormed, mask: rowMasks[block], out: dNormed, rows: rows, cols: width)
    }

    /// Ends block `block`'s backward: the row gradients summed over the batch into the mask's gradient.
    func endBackward(_ backend: Backend, mask: ChannelMask) throws {
        guard let rowGradient, let gradient = mask.gradient else { return }
        try backend.segmentSum(rowGradient, offsets: segmentOffsets, members: segmentMembers, dst: gradient,
                               segments: tokens)
    }
}

extension VisionTransformer {
    /// Applies soft token masks from the next forward on: per block a `ChannelMask` over every token position
    /// ([tokens] values, and a gradient the backward adds into); nil removes them. The buffers stay the caller's.
    public func setTokenMasks(_ masks: [ChannelMask]?) throws {
        if let masks {
            guard config.tokenSets == nil else {
                throw BackendError.invalidArgument("token masks need a model without token sets (the search sees every token)")
            }
            guard masks.count == config.depth else {
                throw BackendError.invalidArgument("\(masks.count) token masks for a model of depth \(config.depth)")
            }
            for (index, mask) in masks.enumerated()
            where mask.values.count < config.tokens || (mask.gradient?.count ?? config.tokens) < config.tokens {
                throw BackendError.invalidArgument("block \(index)'s token mask needs \(config.tokens) values")
            }
        }
        tokenMasks = masks
        tokenMaskPlans = [:]
    }

    /// The token masks' plan for this forward, with every block's values spread over the rows; nil without masks.
    func broadcastTokenMasks(batch: Int, keepingActivations: Bool) throws -> TokenMaskPlan? {
        guard let tokenMasks else { return nil }
        let plan: TokenMaskPlan
        if let existing = tokenMaskPlans[keepingActivations], existing.rows == batch * config.tokens {
            plan = existing
        } else {
            tokenMaskPlans[keepingActivations] = nil
            plan = try TokenMaskPlan(backend, config: config, batch: batch, keepsActivations: keepingActivations)
            tokenMaskPlans[keepingActivations] = plan
        }
        try plan.broadcast(backend, masks: tokenMasks)
        return plan
    }
}
