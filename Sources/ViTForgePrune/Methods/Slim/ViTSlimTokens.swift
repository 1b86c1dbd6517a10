import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// ViT-Slim's token search (METHODS.md §2.b, issue 28): one learnable ρ per (block, token position), the mask
/// `tanh(ρ)` (ρ starts at 3, so the mask at ≈ 0.995) multiplied into the LayerNorm outputs that feed the block's
/// attention and MLP, under the ℓ1 penalty `w·Σ|tanh(ρ)|`. The class and distillation tokens are never masked. The
/// cut keeps the fraction `--keep-tokens` of all blocks' patch-token entries by one threshold, made monotone in depth
/// (`ViTConfig.monotoneTokenSets`), and the pruned model gathers its kept tokens physically (`ViTConfig.tokenSets`).
/// Kept token masks are snapped to 1 at the cut: a per-token factor cannot be folded into shared weights.
extension ViTSlim {
    static func tokenName(_ b: Int) -> String { "slim.tokens.\(b)" }

    /// Per block, the token positions a cut at `keep` of the patch-token entries keeps (prefix tokens always; under
    /// average pooling the last block keeps at least its best patch token); nil when every token is kept.
    public static func tokenSets(_ values: [[Float]], keep: Double, config: ViTConfig) -> [[Int]]? {
        let prefix = config.prefixTokens
        var kept = kept(values.map { Array($0.dropFirst(prefix)) }, keep: keep)
            .map { [Bool](repeating: true, count: prefix) + $0 }
        if config.pooling == .avg, let last = values.indices.last, !kept[last].dropFirst(prefix).contains(true),
           let best = values[last].indices.dropFirst(prefix).max(by: { values[last][$0] < values[last][$1] }) {
            kept[last][best] = true
        }
        return ViTConfig.monotoneTokenSets(kept, prefixTokens: prefix)
    }

    /// `weights` with the token sets of `masks` at `keep` (unchanged without token masks or at keep 1).
    static func withTokenSets(_ weights: ViTWeights, masks: Masks, keep: Double?) throws -> ViTWeights {
        guard let keep else { return weights }
        guard let tokens = masks.tokens else {
            throw PruneError.invalidBudget("--keep-tokens needs a search with token masks (this one has none)")
        }
        var result = weights
        try result.setTokenSets(tokenSets(tokens, keep: keep, config: weights.config))
        return result
    }
}

/// The learned token masks of a search: per block ρ (an optimizer slot) and its gradient, the mask values tanh(ρ)
/// and their gradient (the model's `ChannelMask`), and tanh's slope 1 − tanh²(ρ) (0 on the prefix tokens, which
/// stay at 1). tanh is evaluated on the host after every step: depth × tokens values, once per step, where a device
/// op would need a kernel on every backend for a few thousand elements.
final class SearchTokenMasks {
    struct Block {
        let rho: Buffer            // [tokens], learned
        let rhoGradient: Buffer    // [tokens]
        let values: Buffer         // [tokens], tanh(ρ), prefix 1
        let valueGradient: Buffer  // [tokens], the model's mask gradient
        let slope: Buffer          // [tokens], 1 − tanh²(ρ), prefix 0
    }

    static let initialRho: Float = 3

    let backend: Backend
    let tokens: Int
    let prefixTokens: Int
    let blocks: [Block]

    init(trainer: Trainer, learningRateScale: Double) throws {
        let model = trainer.model
        backend = model.backend
        tokens = model.config.tokens
        prefixTokens = model.config.prefixTokens
        let tokens = self.tokens
        blocks = try (0 ..< model.config.depth).map { _ in
            Block(rho: try model.backend.makeBuffer([Float](repeating: Self.initialRho, count: tokens)),
                  rhoGradient: try model.backend.zeros(tokens), values: try model.backend.allocate(tokens),
                  valueGradient: try model.backend.zeros(tokens), slope: try model.backend.allocate(tokens))
        }
        for (b, block) in blocks.enumerated() {
            try trainer.optimizer.addSlot(name: ViTSlim.tokenName(b), shape: [tokens], parameter: block.rho,
                                          gradient: block.rhoGradient, learningRateScale: learningRateScale)
        }
        try refresh()
        try model.setTokenMasks(blocks.map { ChannelMask(values: $0.values, gradient: $0.valueGradient) })
    }

    /// tanh(ρ) and its slope from the current ρ (after every step and after a resume).
    func refresh() throws {
        for block in blocks {
            let rho = try backend.read(block.rho)
            var values = rho.map { tanh($0) }, slope = values.map { 1 - $0 * $0 }
            for position in 0 ..< prefixTokens {
                values[position] = 1
                slope[position] = 0
            }
            try backend.write(values, to: block.values)
            try backend.write(slope, to: block.slope)
        }
    }

    /// Adds `w·sign(tanh ρ)` to the masks' gradients, moves them onto ρ through tanh's slope, zeroes them; returns
    /// the penalty `w·Σ|tanh ρ|` over the patch tokens.
    func addPenalty(_ weight: Double) throws -> Double {
        var value = 0.0
        for block in blocks {
            value += weight * (try backend.sumOfAbs(block.values, count: tokens) - Double(prefixTokens))
            try backend.addScaledSign(block.values, alpha: Float(weight), y: block.valueGradient, count: tokens)
            try backend.scaleColumns(block.valueGradient, mask: block.slope, out: block.valueGradient, rows: 1,
                                     cols: tokens)
            try backend.add(block.rhoGradient, block.valueGradient, out: block.rhoGradient, count: tokens)
            try backend.fill(block.valueGradient, value: 0, offset: 0, count: tokens)
        }
        return value
    }

    /// The mask values tanh(ρ) of every block (the prefix tokens' 1).
    func values() throws -> [[Float]] { try blocks.map { try backend.read($0.values) } }
}

/// `w·Σ|tanh ρ|` over every block's patch tokens (§2.b), its gradient through tanh onto ρ.
final class TokenSparsityPenalty: TrainingTerm {
    let name = "slim_tokens_l1"
    let masks: SearchTokenMasks
    let weight: Double

    init(masks: SearchTokenMasks, weight: Double) {
        self.masks = masks
        self.weight = weight
    }

    func addGradient(_ trainer: Trainer) throws -> Double { try masks.addPenalty(weight) }
}

/// Recomputes what a search derives from its learned values (the qkv column multipliers, tanh(ρ)) after every step,
/// when the optimizer has moved them, and after a resume.
final class MaskRefresh: TrainingHook {
    let name: String
    let refresh: () throws -> Void

    init(name: String, refresh: @escaping () throws -> Void) {
        self.name = name
        self.refresh = refresh
    }

    func afterStep(_ trainer: Trainer) throws { try refresh() }

    func restore(_ state: HookState, trainer: Trainer) throws { try refresh() }
}
