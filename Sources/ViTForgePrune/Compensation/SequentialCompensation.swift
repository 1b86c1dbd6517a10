import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// The sequential order of `--compensate`: the parallel refit regresses every layer on the unpruned model's inputs,
/// but once anything upstream is cut (a residual channel above all: every LayerNorm then normalises over fewer
/// channels) the pruned model feeds each layer different inputs, and the refit is answering the wrong question. Here
/// the layers are refitted one at a time in depth order (a block's attn.proj, then its fc2, then the classifiers):
/// each on the inputs the model pruned and refitted so far computes, towards the output the unpruned model computes
/// (`LeastSquaresRefit.refit(…joint:…)`), so a layer also absorbs what its upstream's cut did to its inputs.
/// One calibration pass per refitted layer, each running the unpruned and the current pruned model on every batch;
/// the joint Gram [full inputs | pruned inputs] is accumulated on the device in one GEMM per batch
/// (`GramAccumulator.add(_:leftCols:beside:…)`), the solve runs in float64 on the host.
extension Compensation {
    /// The layers the sequential refit visits, in order: every attn.proj and fc2 from the first one whose inputs
    /// the plan changes (its own inputs, or anything upstream: the residual width, a block's attention or MLP
    /// above it), then the classifiers if anything changed. Empty when the plan keeps everything.
    public static func sequentialLayers(of plan: KeepPlan, config: ViTConfig) -> [Layer] {
        let all = KeepPlan(keepingAllOf: config)
        var changed = plan.residual != all.residual
        var layers: [Layer] = []
        for b in config.blocks.indices {
            changed = changed || plan.blocks[b].heads != all.blocks[b].heads
            if changed { layers.append(.attention(block: b)) }
            changed = changed || plan.blocks[b].mlpHidden != all.blocks[b].mlpHidden
            if changed { layers.append(.mlp(block: b)) }
        }
        if changed { layers += (0 ..< (config.distillationToken ? 2 : 1)).map { Layer.classifier(head: $0) } }
        return layers
    }

    /// `weights` (full size) with `sequentialLayers` refitted one after the other, each on the inputs of
    /// `Surgery.prune(weights so far, plan:)`, and the records of each; ready for `Surgery.prune(_, plan:)`.
    public static func compensateSequentially(_ weights: ViTWeights, plan: KeepPlan, backend: Backend,
                                              images: CalibrationImages, limit: Int? = nil, batchSize: Int = 64,
                                              ridge: Double = LeastSquaresRefit.defaultRidge,
                                              collective: any Collective = Collectives.world)
        throws -> (weights: ViTWeights, records: [LayerRecord]) {
        let layers = sequentialLayers(of: plan, config: weights.config)
        guard !layers.isEmpty else { return (weights, []) }
        let full = try VisionTransformer(weights: weights, backend: backend)
        let scratch = try GramScratch(backend: backend)
        var result = weights
        var records: [LayerRecord] = []
        for layer in layers {
            let pruned = try VisionTransformer(weights: Surgery.prune(result, plan: plan), backend: backend)
            let inputs = layer.inputs(weights.config)
            let kept = layer.kept(by: plan, of: weights.config)
            let accumulator = GramAccumulator(cols: inputs + kept.count)
            try images.forEachBatch(limit: limit, batchSize: batchSize, collective: collective) { pixels, _, count, _ in
                let batch = try backend.makeBuffer(pixels)
                try full.forward(images: batch, batch: count)
                try pruned.forward(images: batch, batch: count)
                let rows = layer.rows(full, batch: count)
                guard layer.rows(pruned, batch: count) == rows else {
                    throw PruneError.planMismatch("\(layer.name): the pruned model has \(layer.rows(pruned, batch: count)) "
                                                  + "rows of inputs, the unpruned one \(rows)")
                }
                try accumulator.add(layer.activations(full), leftCols: inputs, beside: layer.activations(pruned),
                                    rows: rows, scratch: scratch)
            }
            guard let w = weights[layer.name + ".weight"], let b = weights[layer.name + ".bias"],
                  w.shape == [b.values.count, inputs] else {
                throw PruneError.planMismatch("\(layer.name) does not match its calibration moments")
            }
            let refit = try LeastSquaresRefit.refit(
                weight: w.values.map(Double.init), bias: b.values.map(Double.init), outputs: w.shape[0],
                inputs: inputs, kept: kept, joint: accumulator.moments(collective: collective), ridge: ridge)
            records.append(try store(refit, of: layer, kept: kept, inputs: inputs, in: &result))
        }
        return (result, records)
    }
}
