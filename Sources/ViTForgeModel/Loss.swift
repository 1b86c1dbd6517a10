import ViTForgeDevice
import ViTForgeFormats

extension VisionTransformer {
    /// Forward, mean cross-entropy against `labels` (Int32 [batch]) with label smoothing, and, when `backward`,
    /// the gradient of that mean accumulated into `gradients` (call `zeroGradients()` first).
    /// For a distilled DeiT the loss is on the average of its two heads, as at inference.
    /// The mean divides by `meanOver` (default `batch`): one rank's share of a data-parallel batch divides by the
    /// whole batch's count, so that the ranks' losses and gradients sum to the whole batch's.
    public func crossEntropy(images: Buffer, labels: Buffer, batch: Int, meanOver: Int? = nil, smoothing: Float = 0,
                             backward: Bool) throws -> Double {
        let denominator = meanOver ?? batch
        let logits = try forward(images: images, batch: batch, keepingActivations: backward)
        guard let cache = lastForwardCache else { throw BackendError.invalidArgument("forward left no cache") }
        try backend.crossEntropyForward(logits: logits, labels: labels, probs: cache.probabilities,
                                        losses: cache.losses, rows: batch, classes: config.classes,
                                        smoothing: smoothing)
        let loss = try backend.sum(cache.losses, count: batch) / Double(denominator)
        if backward, let dLogits = cache.gradients?.dLogits {
            try backend.fill(dLogits, value: 0, offset: 0, count: batch * config.classes)
            try backend.crossEntropyBackward(probs: cache.probabilities, labels: labels, dLogits: dLogits,
                                             rows: batch, classes: config.classes, smoothing: smoothing,
                                             scale: 1 / Float(denominator))
            try self.backward(dLogits: dLogits)
        }
        return loss
    }
}
