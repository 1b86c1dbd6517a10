import ViTForgeDevice
import ViTForgeFormats
import ViTForgeSupport

/// A Vision Transformer on a backend: the parameters as device buffers named exactly as timm's keys, a forward
/// pass that keeps what backward needs (`ActivationCache`) or, for inference, only one block's worth, and a
/// hand-written backward that accumulates into per-parameter gradient buffers (llm.c style: every layer's forward and backward live side by side in `Layers/`).
/// Per-block widths come from the config, so pruned models run through the same code.
public final class VisionTransformer {
    public let config: ViTConfig
    public let backend: Backend
    /// Each block's qkv layout (per-head offsets), built once: every forward and backward reads it per block.
    private let layouts: [QKVLayout]
    /// Device copies of the parameters, by timm name.
    public private(set) var parameters: [String: Buffer] = [:]
    /// d loss / d parameter, by timm name; allocated by the first `zeroGradients()`.
    public private(set) var gradients: [String: Buffer] = [:]
    /// Channel masks the forward applies, one entry per block (nil: none, at no cost); see `setMasks`.
    public private(set) var masks: [BlockMasks]?
    /// A 0/1 mask on the residual width: removed channels are zero in the residual stream and every LayerNorm
    /// normalises over the kept channels only, which is what the model without those channels computes.
    public private(set) var residualMask: ChannelMask?
    /// Soft token masks, one per block over every token position (see TokenMasks.swift); nil: none.
    public internal(set) var tokenMasks: [ChannelMask]?
    /// The token masks' per-batch plans, keyed like `caches`.
    var tokenMaskPlans: [Bool: TokenMaskPlan] = [:]
    /// `masks` folded into the weights they multiply (see `FoldedMasks`).
    private var folded: FoldedMasks?
    /// One cache per layout, keyed by "keeps activations" (training: true, inference: false); each is rebuilt when
    /// the batch size changes. Kept apart so evaluating between training steps does not reallocate.
    private var caches: [Bool: ActivationCache] = [:]
    /// Whether the last forward kept activations, i.e. whether `backward` may run now.
    private var lastForwardKeptActivations = false
    var currentCache: ActivationCache? { lastForwardKeptActivations ? caches[true] : nil }
    /// The cache the last forward wrote, of either layout.
    var lastForwardCache: ActivationCache? { caches[lastForwardKeptActivations] }
    /// How attention's core runs (fused by default; `.unfused` is the reference path, for tests and benchmarks).
    /// Changing it drops the activation caches: the two paths keep different buffers.
    public var attentionPath: AttentionPath = .fused {
        didSet {
            if attentionPath != oldValue {
                caches = [:]
                lastForwardKeptActivations = false
            }
        }
    }

    public init(weights: ViTWeights, backend: Backend) throws {
        self.config = weights.config
        self.backend = backend
        layouts = weights.config.blocks.map(QKVLayout.init)
        for spec in config.parameterSpecs() {
            guard let tensor = weights[spec.name] else {
                throw ModelFileError(file: weights.sourcePath ?? "model", key: spec.name, .missingKey)
            }
            parameters[spec.name] = try backend.makeBuffer(tensor.values)
        }
    }

    /// The current parameters, copied back to the host (to save, or to compare).
    public func hostWeights() throws -> ViTWeights {
        var tensors: [String: HostTensor] = [:]
        for spec in config.parameterSpecs() {
            tensors[spec.name] = HostTensor(shape: spec.shape,
                                            values: try backend.read(parameter(spec.name), count: spec.elementCount))
        }
        return try ViTWeights(config: config, tensors: tensors)
    }

    /// Replaces one parameter's values (same shape).
    public func setParameter(_ name: String, _ values: [Float]) throws {
        try backend.write(values, to: parameter(name))
    }

    /// Applies `masks` (one entry per block, buffers sized as `BlockMasks` says) and a 0/1 `residual` mask
    /// [residualWidth] from the next forward on; nil removes them. The buffers stay the caller's: changing their
    /// values between steps needs no new call.
    public func setMasks(_ masks: [BlockMasks]?, residual: ChannelMask? = nil) throws {
        if let residual {
            guard residual.values.count >= config.residualWidth else {
                throw BackendError.invalidArgument("the residual mask needs \(config.residualWidth) values")
            }
            // A soft residual mask would also scale what LayerNorm normalises away; nothing asks for one.
            guard residual.gradient == nil else {
                throw BackendError.invalidArgument("the residual mask is 0/1 only: it has no gradient")
            }
        }
        residualMask = residual
        if let masks {
            guard masks.count == config.depth else {
                throw BackendError.invalidArgument("\(masks.count) block masks for a model of depth \(config.depth)")
            }
            for (index, (mask, block)) in zip(masks, config.blocks).enumerated() {
                let qkvCount = block.qkvRows
                for (name, entry, count) in [("qkv", mask.qkv, qkvCount), ("MLP", mask.mlpHidden, block.mlpHidden)] {
                    guard let entry else { continue }
                    guard entry.values.count >= count, (entry.gradient?.count ?? count) >= count else {
                        throw BackendError.invalidArgument("block \(index)'s \(name) mask needs \(count) values")
                    }
                }
            }
        }
        self.masks = masks?.allSatisfy(\.isEmpty) == true ? nil : masks
        folded = try self.masks.map { try FoldedMasks(backend, config: config, masks: $0) }
        lastForwardKeptActivations = false
    }

    public func zeroGradients() throws {
        for spec in config.parameterSpecs() {
            if gradients[spec.name] == nil { gradients[spec.name] = try backend.allocate(spec.elementCount) }
            try backend.fill(gradient(spec.name), value: 0, offset: 0, count: spec.elementCount)
        }
    }

    func parameter(_ name: String) throws -> Buffer {
        guard let buffer = parameters[name] else { throw BackendError.invalidArgument("model has no parameter \(name)") }
        return buffer
    }

    func gradient(_ name: String) throws -> Buffer {
        guard let buffer = gradients[name] else {
            throw BackendError.invalidArgument("no gradient for \(name): call zeroGradients() before backward")
        }
        return buffer
    }

    // MARK: Forward

    /// Logits [batch, classes] for normalised images [batch, channels, imageSize, imageSize] already on the device.
    /// The returned buffer belongs to the model and is overwritten by the next forward.
    /// `keepingActivations: false` is inference: every block reuses one set of buffers (a fraction of the memory),
    /// and `backward` and `mlpHiddenActivations` refuse to run until the next forward that keeps them.
    @discardableResult
    public func forward(images: Buffer, batch: Int, keepingActivations: Bool = true) throws -> Buffer {
        let cache = try activationCache(batch: batch, keepingActivations: keepingActivations)
        lastForwardKeptActivations = keepingActivations
        let c = config
        let rows = cache.rows
        let width = c.residualWidth
        try PatchEmbedding.forward(backend, images: images, weights: embeddingWeights(parameter),
                                   plan: cache.embedding, tokens: cache.residual(0))
        try maskResidual(cache.residual(0), rows: rows)
        try foldMasks()
        let tokenMaskPlan = try broadcastTokenMasks(batch: batch, keepingActivations: keepingActivations)
        // Without a residual mask, each residual add is one pass with the branch's output bias and the LayerNorm
        // that reads the sum (residualLayerNormForward; the same float sums as addBias, add, layerNormForward): the
        // block's second add runs the next block's norm1 unless that block gathers its tokens or there is none.
        let fusesResidualAdds = residualMask == nil
        for (index, block) in c.blocks.enumerated() {
            let names = BlockNames(index)
            let blockCache = cache.block(index)
            // Under token pruning the block runs on its kept rows of the previous output (TokenGather.swift).
            let rows = cache.tokenGather.blockRows[index]
            try cache.tokenGather.forward(backend, block: index, residual: cache.residual(2 * index))
            let input = cache.tokenGather.input(index, residual: cache.residual(2 * index))
            let middle = cache.residual(2 * index + 1)
            let output = cache.residual(2 * index + 2)
            let eps = Float(c.layerNormEps)
            if !norm1RunsInPreviousAdd(index, cache) {
                let norm1 = try layerNormSlot(cache, block: index, second: false)
                try layerNormForward(x: input, gamma: norm1.gamma, beta: norm1.beta, out: norm1.out, mean: norm1.mean,
                                     rstd: norm1.rstd, rows: rows, cols: width, eps: eps)
            }
            try tokenMaskPlan?.apply(backend, block: index, second: false, normed: blockCache.norm1)
            let attentionWeights = try maskedAttentionWeights(index, names)
            try Attention.forward(backend, x: blockCache.norm1, weights: attentionWeights,
                                  shape: attentionShape(index, batch: batch), cache: blockCache.attention,
                                  out: cache.branchOut, path: attentionPath, addingProjBias: !fusesResidualAdds)
            try residualAdd(cache, residual: input, bias: fusesResidualAdds ? attentionWeights.projBias : nil,
                            sum: middle, rows: rows, normalizing: (block: index, second: true))
            try tokenMaskPlan?.apply(backend, block: index, second: true, normed: blockCache.norm2)
            let next = index + 1
            let fusesNextNorm = norm1RunsInPreviousAdd(next, cache)
            let mlpWeights = try maskedMLPWeights(index, names)
            try MLP.forward(backend, x: blockCache.norm2, weights: mlpWeights, rows: rows, width: width,
                            hidden: block.mlpHidden, cache: blockCache.mlp, out: cache.branchOut,
                            addingFC2Bias: !fusesNextNorm)
            // When fused, the next block runs on these rows (it gathers none): its input is `output` itself.
            let nextNorm1: (block: Int, second: Bool)? = fusesNextNorm ? (next, false) : nil
            try residualAdd(cache, residual: middle, bias: fusesNextNorm ? mlpWeights.fc2Bias : nil, sum: output,
                            rows: rows, normalizing: nextNorm1)
        }
        try headForward(cache)
        return cache.logits
    }

    /// The MLP hidden activations (post-GELU, [`lastRows(block:)`, mlpHidden]) of block `index` from the last forward,
    /// which must have kept its activations.
    public func mlpHiddenActivations(block index: Int) throws -> Buffer {
        guard let cache = currentCache, index < config.depth else {
            throw BackendError.invalidArgument("no forward that kept activations has run, or block \(index) does not exist")
        }
        return cache.block(index).mlp.hidden
    }

    /// The merged heads' values (`attn.proj`'s input, [`lastRows(block:)`, Σ vDims]) of block `index` from the last
    /// forward, which must have kept its activations: what least-squares compensation refits `proj` on.
    public func attentionMergedValues(block index: Int) throws -> Buffer {
        guard let cache = currentCache, index < config.depth else {
            throw BackendError.invalidArgument("no forward that kept activations has run, or block \(index) does not exist")
        }
        return cache.block(index).attention.merged
    }

    /// The classifier's input (the pooled, final-normed features, [batch, residualWidth]) of head `index` (0:
    /// `head`, 1: `head_dist`) from the last forward, which must have kept its activations: what the sequential
    /// compensation refits the classifier on.
    public func headInputs(head index: Int) throws -> Buffer {
        guard let cache = currentCache, index < cache.heads.count else {
            throw BackendError.invalidArgument("no forward that kept activations has run, or head \(index) does not exist")
        }
        return cache.heads[index].normed
    }

    /// Rows (batch·tokens, every token) of the last forward that kept activations: the embedding's rows.
    public var lastRows: Int { currentCache?.rows ?? 0 }

    /// Rows (batch · the block's tokens) block `index`'s activations had in the last forward that kept them: fewer
    /// than `lastRows` from the first block where a token-pruned model's token set shrinks (`ViTConfig.tokenSets`).
    public func lastRows(block index: Int) -> Int {
        guard let cache = currentCache, index < config.depth else { return 0 }
        return cache.tokenGather.blockRows[index]
    }

    private func headForward(_ cache: ActivationCache) throws {
        let c = config
        let batch = cache.batch
        let width = c.residualWidth
        let norm = c.finalNormName
        let tokens = cache.residual(2 * c.depth)
        for (index, head) in cache.heads.enumerated() {
            if c.pooling == .avg {
                try TokenPooling.averageForward(backend, x: tokens, plan: cache.pooling, pooled: head.pooled)
            } else {
                try TokenPooling.selectForward(backend, x: tokens, token: index, plan: cache.pooling,
                                               pooled: head.pooled)
            }
            try layerNormForward(x: head.pooled, gamma: parameter(norm + ".weight"),
                                         beta: parameter(norm + ".bias"), out: head.normed, mean: head.mean,
                                         rstd: head.rstd, rows: batch, cols: width, eps: Float(c.layerNormEps))
            let headName = index == 0 ? "head" : "head_dist"
            try Linear.forward(backend, x: head.normed, weight: parameter(headName + ".weight"),
                               bias: parameter(headName + ".bias"), out: head.logits, rows: batch,
                               inFeatures: width, outFeatures: c.classes)
        }
        if cache.heads.count == 2 {
            // DeiT at inference: the average of the class-token head and the distillation head.
            try backend.add(cache.heads[0].logits, cache.heads[1].logits, out: cache.logits, count: batch * c.classes)
            try backend.scale(cache.logits, by: 0.5, count: batch * c.classes)
        } else {
            try backend.copy(cache.heads[0].logits, srcOffset: 0, to: cache.logits, dstOffset: 0,
                             count: batch * c.classes)
        }
    }

    // MARK: Backward

    /// Accumulates d loss / d parameter into `gradients` given d loss / d logits [batch, classes] of the last
    /// forward (for a distilled DeiT, the logits are the average of its two heads, so each head gets half).
    public func backward(dLogits: Buffer) throws {
        guard let cache = currentCache, let scratch = cache.gradients else {
            throw BackendError.invalidArgument("backward without a forward that kept its activations")
        }
        let c = config
        let batch = cache.batch
        let width = c.residualWidth
        let norm = c.finalNormName
        var dResidual = scratch.dResidual
        try backend.fill(dResidual, value: 0, offset: 0, count: batch * c.finalTokens * width)
        let headShare: Float = cache.heads.count == 2 ? 0.5 : 1
        for (index, head) in cache.heads.enumerated() {
            let headName = index == 0 ? "head" : "head_dist"
            try backend.fill(scratch.dHeadLogits, value: 0, offset: 0, count: batch * c.classes)
            try backend.axpy(alpha: headShare, x: dLogits, y: scratch.dHeadLogits, count: batch * c.classes)
            try backend.fill(scratch.dNormed, value: 0, offset: 0, count: batch * width)
            try backend.fill(scratch.dPooled, value: 0, offset: 0, count: batch * width)
            try Linear.backward(backend, dOut: scratch.dHeadLogits, x: head.normed, weight: parameter(headName + ".weight"),
                                dX: scratch.dNormed, dWeight: gradient(headName + ".weight"),
                                dBias: gradient(headName + ".bias"), rows: batch, inFeatures: width,
                                outFeatures: c.classes)
            try layerNormBackward(dOut: scratch.dNormed, x: head.pooled, gamma: parameter(norm + ".weight"),
                                          mean: head.mean, rstd: head.rstd, dX: scratch.dPooled,
                                          dGamma: gradient(norm + ".weight"), dBeta: gradient(norm + ".bias"),
                                          rows: batch, cols: width)
            if c.pooling == .avg {
                try TokenPooling.averageBackward(backend, dPooled: scratch.dPooled, plan: cache.pooling, dX: dResidual)
            } else {
                try TokenPooling.selectBackward(backend, dPooled: scratch.dPooled, token: index, plan: cache.pooling,
                                                dX: dResidual)
            }
        }
        for (index, block) in c.blocks.enumerated().reversed() {
            let names = BlockNames(index)
            let blockCache = cache.block(index)
            let rows = cache.tokenGather.blockRows[index]
            let input = cache.tokenGather.input(index, residual: cache.residual(2 * index))
            let tokenMaskPlan = tokenMasks == nil ? nil : tokenMaskPlans[true]
            try tokenMaskPlan?.beginBackward(backend)
            // dResidual holds d(block output); each branch adds its contribution through its LayerNorm, and the
            // identity path carries dResidual through unchanged (LayerNorm backward accumulates into it).
            // Each branch writes dNormedTokens whole (overwriteDX) instead of adding to a zero-filled buffer.
            let mlpGradients = try mlpWeights(names, gradient)
            let foldedFC2 = folded?.blocks[index].fc2Weight != nil ? folded : nil
            if let foldedFC2 {
                try backend.fill(foldedFC2.fc2WeightGradient, value: 0, offset: 0, count: width * block.mlpHidden)
            }
            try MLP.backward(backend, dOut: dResidual, x: blockCache.norm2, weights: maskedMLPWeights(index, names),
                             gradients: foldedFC2.map {
                                 MLPWeights(fc1Weight: mlpGradients.fc1Weight, fc1Bias: mlpGradients.fc1Bias,
                                            fc2Weight: $0.fc2WeightGradient, fc2Bias: mlpGradients.fc2Bias)
                             } ?? mlpGradients,
                             rows: rows, width: width, hidden: block.mlpHidden, cache: blockCache.mlp,
                             dHidden: scratch.dHidden,
                             dPreActivation: scratch.dPreActivation, dX: scratch.dNormedTokens, overwriteDX: true)
            if let foldedFC2, let mask = masks?[index].mlpHidden {
                try unfoldMLPGradient(foldedFC2, mask: mask, names: names, block: block)
            }
            try tokenMaskPlan?.backward(backend, block: index, second: true, dNormed: scratch.dNormedTokens)
            try layerNormBackward(dOut: scratch.dNormedTokens, x: cache.residual(2 * index + 1),
                                          gamma: parameter(names.norm2Weight), mean: blockCache.norm2Mean,
                                          rstd: blockCache.norm2Rstd, dX: dResidual,
                                          dGamma: gradient(names.norm2Weight), dBeta: gradient(names.norm2Bias),
                                          rows: rows, cols: width)
            let attentionGradients = try attentionWeights(names, gradient)
            let foldedQKV = folded?.blocks[index].qkvWeight != nil ? folded : nil
            if let foldedQKV {
                try backend.fill(foldedQKV.qkvWeightGradient, value: 0, offset: 0, count: block.qkvRows * width)
                try backend.fill(foldedQKV.qkvBiasGradient, value: 0, offset: 0, count: block.qkvRows)
            }
            try Attention.backward(backend, dOut: dResidual, x: blockCache.norm1,
                                   weights: maskedAttentionWeights(index, names),
                                   gradients: foldedQKV.map {
                                       AttentionWeights(qkvWeight: $0.qkvWeightGradient,
                                                        qkvBias: c.qkvBias ? $0.qkvBiasGradient : nil,
                                                        projWeight: attentionGradients.projWeight,
                                                        projBias: attentionGradients.projBias)
                                   } ?? attentionGradients,
                                   shape: attentionShape(index, batch: batch), cache: blockCache.attention,
                                   scratch: scratch.attention, dX: scratch.dNormedTokens, overwriteDX: true,
                                   path: attentionPath)
            if let foldedQKV, let mask = masks?[index].qkv {
                try unfoldQKVGradient(foldedQKV, mask: mask, names: names, block: block)
            }
            try tokenMaskPlan?.backward(backend, block: index, second: false, dNormed: scratch.dNormedTokens)
            if let tokenMaskPlan, let mask = tokenMasks?[index] { try tokenMaskPlan.endBackward(backend, mask: mask) }
            try layerNormBackward(dOut: scratch.dNormedTokens, x: input,
                                          gamma: parameter(names.norm1Weight), mean: blockCache.norm1Mean,
                                          rstd: blockCache.norm1Rstd, dX: dResidual,
                                          dGamma: gradient(names.norm1Weight), dBeta: gradient(names.norm1Bias),
                                          rows: rows, cols: width)
            if cache.tokenGather.gathers(index), let spare = scratch.dResidualSpare {
                let previous = dResidual === spare ? scratch.dResidual : spare
                try cache.tokenGather.backward(backend, block: index, dInput: dResidual, dResidual: previous)
                dResidual = previous
            }
        }
        try PatchEmbedding.backward(backend, dTokens: dResidual, weights: embeddingWeights(parameter),
                                    gradients: embeddingWeights(gradient), plan: cache.embedding)
    }

    // MARK: Plumbing

    /// Writes every block's masked weights from the current parameters and mask values (the masks may have changed
    /// since the last forward: a method learns them).
    private func foldMasks() throws {
        guard let folded, let masks else { return }
        let width = config.residualWidth
        for (index, (block, mask)) in zip(config.blocks, masks).enumerated() {
            let names = BlockNames(index), target = folded.blocks[index]
            if let qkv = mask.qkv, let weight = target.qkvWeight {
                try backend.scaleRows(parameter(names.qkvWeight), mask: qkv.values, out: weight, rows: block.qkvRows,
                                      cols: width)
                if let bias = target.qkvBias {
                    try backend.scaleRows(parameter(names.qkvBias), mask: qkv.values, out: bias, rows: block.qkvRows,
                                          cols: 1)
                }
            }
            if let mlp = mask.mlpHidden, let weight = target.fc2Weight {
                try backend.scaleColumns(parameter(names.fc2Weight), mask: mlp.values, out: weight, rows: width,
                                         cols: block.mlpHidden)
            }
        }
    }

    /// From the folded qkv weight's gradient G (and bias gradient g): the mask's gradient Σ_j W∘G + b∘g per row,
    /// then `dW += m∘G`, `db += m∘g`.
    private func unfoldQKVGradient(_ folded: FoldedMasks, mask: ChannelMask, names: BlockNames,
                                   block: BlockConfig) throws {
        let rows = block.qkvRows, width = config.residualWidth
        if let maskGradient = mask.gradient {
            try backend.maskGradientRows(x: parameter(names.qkvWeight), dY: folded.qkvWeightGradient,
                                         dMask: maskGradient, rows: rows, cols: width)
            if config.qkvBias {
                try backend.maskGradientRows(x: parameter(names.qkvBias), dY: folded.qkvBiasGradient,
                                             dMask: maskGradient, rows: rows, cols: 1)
            }
        }
        try backend.scaleRows(folded.qkvWeightGradient, mask: mask.values, out: folded.qkvWeightGradient, rows: rows,
                              cols: width)
        try backend.add(gradient(names.qkvWeight), folded.qkvWeightGradient, out: gradient(names.qkvWeight),
                        count: rows * width)
        if config.qkvBias {
            try backend.scaleRows(folded.qkvBiasGradient, mask: mask.values, out: folded.qkvBiasGradient, rows: rows,
                                  cols: 1)
            try backend.add(gradient(names.qkvBias), folded.qkvBiasGradient, out: gradient(names.qkvBias),
                            count: rows)
        }
    }

    /// From the folded fc2 weight's gradient G: the mask's gradient Σ_i W2∘G per column, then `dW2 += G·diag(m)`.
    private func unfoldMLPGradient(_ folded: FoldedMasks, mask: ChannelMask, names: BlockNames,
                                   block: BlockConfig) throws {
        let width = config.residualWidth, hidden = block.mlpHidden
        if let maskGradient = mask.gradient {
            try backend.maskGradient(x: parameter(names.fc2Weight), dY: folded.fc2WeightGradient, dMask: maskGradient,
                                     rows: width, cols: hidden)
        }
        try backend.scaleColumns(folded.fc2WeightGradient, mask: mask.values, out: folded.fc2WeightGradient,
                                 rows: width, cols: hidden)
        try backend.add(gradient(names.fc2Weight), folded.fc2WeightGradient, out: gradient(names.fc2Weight),
                        count: width * hidden)
    }

    /// Block `index`'s attention weights as the forward uses them: the masked qkv weight and bias when folded.
    private func maskedAttentionWeights(_ index: Int, _ names: BlockNames) throws -> AttentionWeights {
        let plain = try attentionWeights(names, parameter)
        guard let block = folded?.blocks[index], let weight = block.qkvWeight else { return plain }
        return AttentionWeights(qkvWeight: weight, qkvBias: block.qkvBias ?? plain.qkvBias,
                                projWeight: plain.projWeight, projBias: plain.projBias)
    }

    /// Block `index`'s MLP weights as the forward uses them: the masked fc2 weight when folded.
    private func maskedMLPWeights(_ index: Int, _ names: BlockNames) throws -> MLPWeights {
        let plain = try mlpWeights(names, parameter)
        guard let weight = folded?.blocks[index].fc2Weight else { return plain }
        return MLPWeights(fc1Weight: plain.fc1Weight, fc1Bias: plain.fc1Bias, fc2Weight: weight,
                          fc2Bias: plain.fc2Bias)
    }

    /// Zeroes the removed residual channels of x [rows, width] (nothing without a residual mask).
    private func maskResidual(_ x: Buffer, rows: Int) throws {
        guard let residualMask else { return }
        try backend.scaleColumns(x, mask: residualMask.values, out: x, rows: rows, cols: config.residualWidth)
    }

    /// Whether block `index`'s norm1 runs inside the previous block's second residual add (fused, no residual mask)
    /// rather than on its own: not for the first block, nor past the last, nor for a block that gathers its tokens
    /// (its input is then not the previous block's output).
    private func norm1RunsInPreviousAdd(_ index: Int, _ cache: ActivationCache) -> Bool {
        residualMask == nil && index > 0 && index < config.depth && !cache.tokenGather.gathers(index)
    }

    /// Block `block`'s norm1 (`second`: norm2): its parameters and where its forward writes.
    private func layerNormSlot(_ cache: ActivationCache, block: Int, second: Bool) throws
        -> (gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer) {
        let names = BlockNames(block), blockCache = cache.block(block)
        return second
            ? (try parameter(names.norm2Weight), try parameter(names.norm2Bias),
               blockCache.norm2, blockCache.norm2Mean, blockCache.norm2Rstd)
            : (try parameter(names.norm1Weight), try parameter(names.norm1Bias),
               blockCache.norm1, blockCache.norm1Mean, blockCache.norm1Rstd)
    }

    /// A residual add, `sum = residual + cache.branchOut`, then, with `normalizing`, block `block`'s norm1 (`second`:
    /// norm2) of the sum into that block's cache. With `bias` (the branch's output bias, which the branch then left
    /// out; only without a residual mask) and a LayerNorm to run, all of it is one pass, `residualLayerNormForward`.
    private func residualAdd(_ cache: ActivationCache, residual: Buffer, bias: Buffer?, sum: Buffer, rows: Int,
                             normalizing: (block: Int, second: Bool)?) throws {
        let width = config.residualWidth, eps = Float(config.layerNormEps)
        let norm = try normalizing.map { try layerNormSlot(cache, block: $0.block, second: $0.second) }
        if let bias, let norm {
            try backend.residualLayerNormForward(residual: residual, branch: cache.branchOut, bias: bias, sum: sum,
                                                 gamma: norm.gamma, beta: norm.beta, out: norm.out, mean: norm.mean,
                                                 rstd: norm.rstd, rows: rows, cols: width, eps: eps)
            return
        }
        precondition(bias == nil, "a branch left out its bias for a residual add that does not fuse it")
        try maskResidual(cache.branchOut, rows: rows)
        try backend.add(residual, cache.branchOut, out: sum, count: rows * width)
        if let norm {
            try layerNormForward(x: sum, gamma: norm.gamma, beta: norm.beta, out: norm.out, mean: norm.mean,
                                 rstd: norm.rstd, rows: rows, cols: width, eps: eps)
        }
    }

    /// LayerNorm over the residual width, or over its kept channels under a residual mask.
    private func layerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer,
                                  rows: Int, cols: Int, eps: Float) throws {
        if let residualMask {
            try backend.maskedLayerNormForward(x: x, gamma: gamma, beta: beta, keep: residualMask.values, out: out,
                                               mean: mean, rstd: rstd, rows: rows, cols: cols, eps: eps)
        } else {
            try backend.layerNormForward(x: x, gamma: gamma, beta: beta, out: out, mean: mean, rstd: rstd, rows: rows,
                                         cols: cols, eps: eps)
        }
    }

    private func layerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer, dX: Buffer,
                                   dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws {
        if let residualMask {
            try backend.maskedLayerNormBackward(dOut: dOut, x: x, gamma: gamma, keep: residualMask.values,
                                                mean: mean, rstd: rstd, dX: dX, dGamma: dGamma, dBeta: dBeta,
                                                rows: rows, cols: cols)
        } else {
            try backend.layerNormBackward(dOut: dOut, x: x, gamma: gamma, mean: mean, rstd: rstd, dX: dX,
                                          dGamma: dGamma, dBeta: dBeta, rows: rows, cols: cols)
        }
    }

    private func activationCache(batch: Int, keepingActivations: Bool) throws -> ActivationCache {
        if let existing = caches[keepingActivations], existing.batch == batch { return existing }
        caches[keepingActivations] = nil  // release the old batch size's buffers before allocating the new ones
        let made = try ActivationCache(backend, config: config, batch: batch, keepsActivations: keepingActivations,
                                       attentionPath: attentionPath)
        caches[keepingActivations] = made
        return made
    }

    func attentionShape(_ block: Int, batch: Int) -> AttentionShape {
        AttentionShape(batch: batch, tokens: config.tokens(inBlock: block), width: config.residualWidth, layout: layouts[block],
                       scale: Float(config.blocks[block].attentionScale))
    }

    private func embeddingWeights(_ lookup: (String) throws -> Buffer) throws -> PatchEmbeddingWeights {
        var prefix: [Buffer] = []
        if config.classToken { prefix.append(try lookup("cls_token")) }
        if config.distillationToken { prefix.append(try lookup("dist_token")) }
        return PatchEmbeddingWeights(projWeight: try lookup("patch_embed.proj.weight"),
                                     projBias: try lookup("patch_embed.proj.bias"), prefixTokens: prefix,
                                     posEmbed: try lookup("pos_embed"))
    }

    private func attentionWeights(_ names: BlockNames, _ lookup: (String) throws -> Buffer) throws -> AttentionWeights {
        AttentionWeights(qkvWeight: try lookup(names.qkvWeight),
                         qkvBias: config.qkvBias ? try lookup(names.qkvBias) : nil,
                         projWeight: try lookup(names.projWeight), projBias: try lookup(names.projBias))
    }

    private func mlpWeights(_ names: BlockNames, _ lookup: (String) throws -> Buffer) throws -> MLPWeights {
        MLPWeights(fc1Weight: try lookup(names.fc1Weight), fc1Bias: try lookup(names.fc1Bias),
                   fc2Weight: try lookup(names.fc2Weight), fc2Bias: try lookup(names.fc2Bias))
    }
}

/// timm's parameter names of block `i`.
struct BlockNames {
    let norm1Weight, norm1Bias, qkvWeight, qkvBias, projWeight, projBias: String
    let norm2Weight, norm2Bias, fc1Weight, fc1Bias, fc2Weight, fc2Bias: String

    init(_ index: Int) {
        let p = "blocks.\(index)."
        norm1Weight = p + "norm1.weight"; norm1Bias = p + "norm1.bias"
        qkvWeight = p + "attn.qkv.weight"; qkvBias = p + "attn.qkv.bias"
        projWeight = p + "attn.proj.weight"; projBias = p + "attn.proj.bias"
        norm2Weight = p + "norm2.weight"; norm2Bias = p + "norm2.bias"
        fc1Weight = p + "mlp.fc1.weight"; fc1Bias = p + "mlp.fc1.bias"
        fc2Weight = p + "mlp.fc2.weight"; fc2Bias = p + "mlp.fc2.bias"
    }
}
