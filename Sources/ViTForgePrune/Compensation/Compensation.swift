import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// `--compensate`: after a one-shot method's keep plan is known and before surgery, refit what consumes the pruned
/// channels so that each block's output is reproduced on the calibration tokens (`LeastSquaresRefit`):
/// - MLP neurons: `fc2`'s kept columns and bias, regressed on the kept post-GELU activations;
/// - value dims and whole heads: `attn.proj`'s kept columns and bias, regressed on the kept merged heads' values.
/// Not compensated, on purpose:
/// - residual channels: a residual channel is read by every block (each LayerNorm normalises over it, so removing
///   it changes every normalised input nonlinearly) and written by every block; there is no one linear layer whose
///   refit could stand in for it;
/// - q/k dims: they enter the scores bilinearly (q·kᵀ) inside a softmax, so no linear refit of a consumer
///   reproduces them. When a head loses q/k dims but keeps v dims (ViT-Slim cuts both together), its kept values
///   themselves change, and the refit of `proj` on the original values is an approximation.
/// Two orders (`CompensationSettings.Order`): parallel, every layer refitted on the unpruned model's inputs from one
/// pass (`compensate`); sequential, layer by layer in depth order on the inputs of the model pruned and refitted so
/// far, towards the unpruned model's outputs, then the classifiers (`compensateSequentially`), which also answers
/// a cut residual stream in part: every layer downstream of it is refitted to what the full model computed.
public enum Compensation {
    /// A linear layer whose inputs a keep plan can remove, refitted by compensation.
    public enum Layer: Hashable, Sendable {
        /// `blocks.b.mlp.fc2`, inputs the MLP's hidden neurons.
        case mlp(block: Int)
        /// `blocks.b.attn.proj`, inputs the merged heads' values.
        case attention(block: Int)
        /// The classifier `head` (0) or `head_dist` (1), inputs the final-normed residual channels; refitted by the
        /// sequential compensation only (`SequentialCompensation`), on the pruned model's features.
        case classifier(head: Int)

        public var name: String {
            switch self {
            case .mlp(let b): return "blocks.\(b).mlp.fc2"
            case .attention(let b): return "blocks.\(b).attn.proj"
            case .classifier(let h): return h == 0 ? "head" : "head_dist"
            }
        }

        /// The depth order of the layers: a block's attention, then its MLP; the classifiers after every block.
        var order: (Int, Int) {
            switch self {
            case .attention(let b): return (b, 0)
            case .mlp(let b): return (b, 1)
            case .classifier(let h): return (Int.max, h)
            }
        }

        /// Input channels of the layer in the unpruned `config`.
        func inputs(_ config: ViTConfig) -> Int {
            switch self {
            case .mlp(let b): return config.blocks[b].mlpHidden
            case .attention(let b): return config.blocks[b].attentionWidth
            case .classifier: return config.residualWidth
            }
        }

        /// The inputs `plan` keeps (ascending, original numbering).
        func kept(by plan: KeepPlan, of config: ViTConfig) -> [Int] {
            switch self {
            case .mlp(let b): return plan.blocks[b].mlpHidden
            case .attention(let b): return plan.keepIndices(along: .mergedValues(block: b), of: config) ?? []
            case .classifier: return plan.residual
            }
        }

        /// The activations of the layer's inputs from `model`'s last forward.
        func activations(_ model: VisionTransformer) throws -> Buffer {
            switch self {
            case .mlp(let b): return try model.mlpHiddenActivations(block: b)
            case .attention(let b): return try model.attentionMergedValues(block: b)
            case .classifier(let h): return try model.headInputs(head: h)
            }
        }

        /// Rows of those activations after a forward of `batch` images: the block's tokens (fewer in a token-pruned
        /// model) for the blocks' layers, images for the classifiers.
        func rows(_ model: VisionTransformer, batch: Int) -> Int {
            switch self {
            case .mlp(let b), .attention(let b): return model.lastRows(block: b)
            case .classifier: return batch
            }
        }
    }

    /// One refitted layer, for the report.
    public struct LayerRecord: Codable, Equatable, Sendable {
        public var layer: String
        public var kept: Int
        public var removed: Int
        /// Output error of the plain cut, the mean shift and the refit, relative to the layer's output variance.
        public var error: LeastSquaresRefit.ReconstructionError
    }

    /// Every layer of `config` with inputs that `plan` removes.
    public static func layers(of plan: KeepPlan, config: ViTConfig) -> [Layer] {
        config.blocks.indices.flatMap { b in [Layer.attention(block: b), .mlp(block: b)] }.filter { layer in
            layer.kept(by: plan, of: config).count < layer.inputs(config)
        }
    }

    /// The moments of every layer's inputs over the first `limit` calibration images (all when nil), accumulated on
    /// the device (`GramAccumulator`), from one pass of `weights`' model: over the tokens the layer's block sees (a
    /// token-pruned model's later blocks see fewer).
    public static func moments(of weights: ViTWeights, layers: [Layer], backend: Backend, images: CalibrationImages,
                               limit: Int? = nil, batchSize: Int = 64, collective: any Collective = Collectives.world)
        throws -> [Layer: ActivationMoments] {
        guard !layers.isEmpty else { return [:] }
        let model = try VisionTransformer(weights: weights, backend: backend)
        let scratch = try GramScratch(backend: backend)
        let accumulators = layers.map { GramAccumulator(cols: $0.inputs(weights.config)) }
        try images.forEachBatch(limit: limit, batchSize: batchSize, collective: collective) { pixels, _, count, _ in
            try model.forward(images: backend.makeBuffer(pixels), batch: count)
            for (layer, accumulator) in zip(layers, accumulators) {
                try accumulator.add(layer.activations(model), rows: layer.rows(model, batch: count), scratch: scratch)
            }
        }
        var result: [Layer: ActivationMoments] = [:]
        for (layer, accumulator) in zip(layers, accumulators) { result[layer] = try accumulator.moments(collective: collective) }
        return result
    }

    /// `weights` with every layer of `moments` refitted to `plan`'s kept inputs (removed columns zeroed, so the
    /// full model under `plan`'s masks computes what the pruned one does), and what each refit achieved.
    public static func apply(_ weights: ViTWeights, plan: KeepPlan, moments: [Layer: ActivationMoments],
                             ridge: Double) throws -> (weights: ViTWeights, records: [LayerRecord]) {
        var result = weights
        var records: [LayerRecord] = []
        for layer in moments.keys.sorted(by: { $0.order < $1.order }) {
            guard let layerMoments = moments[layer], let w = weights[layer.name + ".weight"],
                  let b = weights[layer.name + ".bias"], w.shape.count == 2, w.shape[1] == layerMoments.count else {
                throw PruneError.planMismatch("\(layer.name) does not match its calibration moments")
            }
            let outputs = w.shape[0], inputs = w.shape[1]
            let kept = layer.kept(by: plan, of: weights.config)
            let refit = try LeastSquaresRefit.refit(weight: w.values.map(Double.init), bias: b.values.map(Double.init),
                                                    outputs: outputs, kept: kept, moments: layerMoments, ridge: ridge)
            records.append(try store(refit, of: layer, kept: kept, inputs: inputs, in: &result))
        }
        return (result, records)
    }

    /// Writes `refit` into `weights`' full-size `layer` (the kept columns; removed ones zeroed) and returns its record.
    static func store(_ refit: LeastSquaresRefit.Result, of layer: Layer, kept: [Int], inputs: Int,
                      in weights: inout ViTWeights) throws -> LayerRecord {
        let outputs = refit.bias.count
        var newWeight = [Float](repeating: 0, count: outputs * inputs)
        for o in 0 ..< outputs {
            for (c, j) in kept.enumerated() { newWeight[o * inputs + j] = Float(refit.weight[o * kept.count + c]) }
        }
        try weights.setValues(layer.name + ".weight", newWeight)
        try weights.setValues(layer.name + ".bias", refit.bias.map { Float($0) })
        return LayerRecord(layer: layer.name, kept: kept.count, removed: inputs - kept.count, error: refit.error)
    }

    /// The whole step: the moments of the layers `plan` cuts, then their refit; returns the full (unpruned-shape)
    /// weights, ready for `Surgery.prune(_, plan:)`.
    public static func compensate(_ weights: ViTWeights, plan: KeepPlan, backend: Backend, images: CalibrationImages,
                                  limit: Int? = nil, batchSize: Int = 64, ridge: Double = LeastSquaresRefit.defaultRidge)
        throws -> (weights: ViTWeights, records: [LayerRecord]) {
        let layers = layers(of: plan, config: weights.config)
        let moments = try moments(of: weights, layers: layers, backend: backend, images: images, limit: limit,
                                  batchSize: batchSize)
        return try apply(weights, plan: plan, moments: moments, ridge: ridge)
    }
}
