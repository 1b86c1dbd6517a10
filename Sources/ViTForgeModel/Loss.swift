import ViTForgeDevice

extension VisionTransformer {
    /// Forward, mean cross-entropy against `labels` (Int32 [batch]) with label smoothing, and, when `backward`,
    /// the gradient of that mean accumulated into `gradients` (call `zeroGradients()` first).
    /// For a distilled DeiT the loss is on the average of its two heads, as at inference.
    public func crossEntropy(images: Buffer, labels: Buffer, batch: Int, smoothing: Float = 0,
                             backward: Bool) throws -> Double {
        let logits = try forward(images: images, batch: batch)
        guard let cache = currentCache else { throw BackendError.invalidArgument("forward left no cache") }
        try backend.crossEntropyForward(logits: logits, labels: labels, probs: cache.probabilities,
                                        losses: cache.losses, rows: batch, classes: config.classes,
                                        smoothing: smoothing)
        let loss = try backend.sum(cache.losses, count: batch) / Double(batch)
        if backward {
            try backend.fill(cache.dLogits, value: 0, offset: 0, count: batch * config.classes)
            try backend.crossEntropyBackward(probs: cache.probabilities, labels: labels, dLogits: cache.dLogits,
                                             rows: batch, classes: config.classes, smoothing: smoothing,
                                             scale: 1 / Float(batch))
            try self.backward(dLogits: cache.dLogits)
        }
        return loss
    }
}
