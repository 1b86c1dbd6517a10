import ViTForgeDevice

extension VisionTransformer {
    /// Forward, mean cross-entropy against `labels` (Int32 [batch]) with label smoothing, and, when `backward`,
    /// the gradient of that mean accumulated into `gradients` (call `zeroGradients()` first).
    /// For a distilled DeiT the loss is on the average of its two heads, as at inference.
    public func crossEntropy(images: Buffer, labels: Buffer, batch: Int, smoothing: Float = 0,
                             backward: Bool) throws -> Double {
        let logits = try forward(images: images, batch: batch, keepingActivations: backward)
        guard let cache = lastForwardCache else { throw BackendError.invalidArgument("forward left no cache") }
        try backend.crossEntropyForward(logits: logits, labels: labels, probs: cache.probabilities,
                                        losses: cache.losses, rows: batch, classes: config.classes,
                                        smoothing: smoothing)
        let loss = try backend.sum(cache.losses, count: batch) / Double(batch)
        if backward, let dLogits = cache.gradients?.dLogits {
            try backend.fill(dLogits, value: 0, offset: 0, count: batch * config.classes)
            try backend.crossEntropyBackward(probs: cache.probabilities, labels: labels, dLogits: dLogits,
                                             rows: batch, classes: config.classes, smoothing: smoothing,
                                             scale: 1 / Float(batch))
            try self.backward(dLogits: dLogits)
        }
        return loss
    }
}
