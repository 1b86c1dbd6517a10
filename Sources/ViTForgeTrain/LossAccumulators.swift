import ViTForgeDevice

/// The training loss kept on the device, so that a step never waits for it (issue 16): float64 sums that
/// `Backend.accumulateSum` adds each step's per-image losses into, plus the first step whose loss was not finite.
/// The host reads them (one small download) only when someone asks: a progress report that shows the loss, the end
/// of an epoch, a checkpoint, `Trainer.lastStepLoss()`. On an OpenCL device without float64 the trainer cannot
/// train at all (the losses' sums always needed cl_khr_fp64), so there is no float32 variant.
final class LossAccumulators {
    /// The float64 values of the buffer, in order.
    enum Slot: Int, CaseIterable {
        /// Σ of the steps' mean losses since the last `takeWindow` (the progress report's mean).
        case window
        /// Σ of mean loss × images over the epoch so far (the epoch's train loss × its images).
        case epoch
        /// The last step's mean loss and its cross-entropy and distillation parts.
        case lastTotal, lastCrossEntropy, lastDistillation
        /// The first step (1-based) whose loss was not finite, 0 while none; then the sum that was.
        case badStep, badValue
        /// Σ g² over the clipped gradients of this step.
        case squaredGradientNorm
    }

    let backend: any TrainingOps
    let buffer: Buffer

    init(backend: any TrainingOps) throws {
        self.backend = backend
        buffer = try backend.zeros(2 * Slot.allCases.count)
    }

    /// What AdamW tests to skip its update once a loss went bad (`Backend.adamwStep(skipWhen:)`).
    var nonFiniteFlag: DeviceFlag { DeviceFlag(buffer: buffer, index: Slot.badStep.rawValue) }

    /// Zeroes the last step's values before a step adds its parts.
    func startStep() throws {
        try zero(from: .lastTotal, through: .lastDistillation)
    }

    /// Adds one part of the loss (cross-entropy or distillation): `losses[0 ..< rows]` are its per-image values,
    /// `weight` its share of the total (1 − α or α), `denominator` the images a mean divides by and `images` the
    /// batch's images; a non-finite sum flags `step`.
    func add(losses: Buffer, rows: Int, part: Slot, weight: Double, denominator: Double, images: Int,
             step: Int) throws {
        var weights = [Double](repeating: 0, count: Slot.squaredGradientNorm.rawValue)
        weights[Slot.window.rawValue] = weight / denominator
        weights[Slot.epoch.rawValue] = weight * Double(images) / denominator
        weights[Slot.lastTotal.rawValue] = weight / denominator
        weights[part.rawValue] = 1 / denominator
        try backend.accumulateSum(losses, count: rows, squares: false, weights: weights, into: buffer,
                                  flag: Slot.badStep.rawValue, marker: Double(step))
    }

    /// Clips `gradients` to a global L2 norm of `maxNorm` (torch's `clip_grad_norm_`) with the norm on the device.
    func clip(_ gradients: [(Buffer, Int)], maxNorm: Double) throws {
        try zero(from: .squaredGradientNorm, through: .squaredGradientNorm)
        let index = Slot.squaredGradientNorm.rawValue
        var weights = [Double](repeating: 0, count: index + 1)
        weights[index] = 1
        for (gradient, count) in gradients {
            try backend.accumulateSum(gradient, count: count, squares: true, weights: weights, into: buffer, flag: nil,
                                      marker: 0)
        }
        for (gradient, count) in gradients {
            try backend.clipScale(gradient, count: count, squaredNorm: buffer, index: index, maxNorm: maxNorm,
                                  epsilon: GradientClipping.epsilon)
        }
    }

    /// Every slot, read back (waits for the device).
    func read() throws -> [Slot: Double] {
        let floats = try backend.read(buffer)
        var values: [Slot: Double] = [:]
        for slot in Slot.allCases {
            let low = UInt64(floats[2 * slot.rawValue].bitPattern)
            let high = UInt64(floats[2 * slot.rawValue + 1].bitPattern)
            values[slot] = Double(bitPattern: high << 32 | low)
        }
        return values
    }

    /// Zeroes the progress window (after reading it).
    func clearWindow() throws { try zero(from: .window, through: .window) }

    /// Zeroes the epoch's sum (a new epoch).
    func clearEpoch() throws { try zero(from: .epoch, through: .epoch) }

    /// Sets every slot to 0 but the epoch's sum, which becomes `epochSum` (a new epoch, a resumed one).
    func restart(epochSum: Double) throws {
        var floats = [Float](repeating: 0, count: buffer.count)
        let bits = epochSum.bitPattern
        floats[2 * Slot.epoch.rawValue] = Float(bitPattern: UInt32(truncatingIfNeeded: bits))
        floats[2 * Slot.epoch.rawValue + 1] = Float(bitPattern: UInt32(truncatingIfNeeded: bits >> 32))
        try backend.write(floats, to: buffer)
    }

    private func zero(from first: Slot, through last: Slot) throws {
        try backend.fill(buffer, value: 0, offset: 2 * first.rawValue, count: 2 * (last.rawValue - first.rawValue + 1))
    }
}
