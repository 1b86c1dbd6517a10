import Foundation
import ViTForgeDevice
import ViTForgeModel

/// Learning rate per optimizer step: linear warm-up, then half a cosine down to a floor. With `s` the 0-based index
/// of the update (the `s`-th call of `AdamW.step`), `W` warm-up steps and `N` steps in all:
///
///     s < W:        lr(s) = peak · (s + 1) / W
///     W ≤ s < N:    lr(s) = floor + (peak − floor) · ½ · (1 + cos(π · (s − W) / (N − W)))
///     s ≥ N:        lr(s) = floor
///
/// This is `torch.optim.lr_scheduler.LambdaLR` with the usual warm-up-cosine lambda stepped after every optimizer
/// step (the fixture recipe's "5% linear warm-up then cosine to 0, per step"). The warm-up counts from `s + 1` so the
/// first update already moves the weights (timm's `warmup_lr_init = 0` would waste it); the cosine starts at the
/// peak on step `W` and reaches the floor exactly after the last step. Computed in float64, rounded once by AdamW.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public var floor: Double

    public init(peak: Double, warmupSteps: Int, totalSteps: Int, floor: Double = 0) {
        self.peak = peak
        self.warmupSteps = max(0, warmupSteps)
        self.totalSteps = max(0, totalSteps)
        self.floor = floor
    }

    /// A constant learning rate (the AdamW fixtures).
    public static func constant(_ learningRate: Double) -> LearningRateSchedule {
        LearningRateSchedule(peak: learningRate, warmupSteps: 0, totalSteps: Int.max, floor: learningRate)
    }

    /// `warmupFraction` of `totalSteps` (rounded down, as the fixture's 5% of 3283 = 164) for the warm-up.
    public init(peak: Double, warmupFraction: Double, totalSteps: Int, floor: Double = 0) {
        self.init(peak: peak, warmupSteps: Int(Double(totalSteps) * warmupFraction), totalSteps: totalSteps,
                  floor: floor)
    }

    public func learningRate(step s: Int) -> Double {
        if s < warmupSteps { return peak * Double(s + 1) / Double(warmupSteps) }
        if s >= totalSteps { return floor }
        let progress = Double(s - warmupSteps) / Double(totalSteps - warmupSteps)
        return floor + (peak - floor) * 0.5 * (1 + cos(Double.pi * progress))
    }
}

/// Global gradient-norm clipping as `torch.nn.utils.clip_grad_norm_` (L2): the norm over all gradients together is
/// `√Σ‖g_i‖²`, each `sumOfSquares` accumulated in float64; when it exceeds `maxNorm`, every gradient is multiplied by
/// `maxNorm / (norm + 1e-6)` (torch's epsilon, which keeps a zero norm finite and leaves the clipped norm a hair under
/// the maximum).
public enum GradientClipping {
    /// torch's `clip_grad_norm_` epsilon.
    public static let epsilon = 1e-6

    /// The global L2 norm of `buffers` (each `counts[i]` elements).
    public static func globalNorm(_ buffers: [(Buffer, Int)], backend: any TensorOps) throws -> Double {
        var sumOfSquares = 0.0
        for (buffer, count) in buffers { sumOfSquares += try backend.sumOfSquares(buffer, count: count) }
        return sumOfSquares.squareRoot()
    }

    /// Scales the gradients when their global norm exceeds `maxNorm`; returns the norm before clipping (read back to
    /// the host; the trainer clips with the norm kept on the device, `LossAccumulators.clip`).
    @discardableResult
    public static func clip(_ buffers: [(Buffer, Int)], maxNorm: Double, backend: any TensorOps) throws -> Double {
        let norm = try globalNorm(buffers, backend: backend)
        let coefficient = maxNorm / (norm + epsilon)
        if coefficient < 1 {
            for (buffer, count) in buffers { try backend.scale(buffer, by: Float(coefficient), count: count) }
        }
        return norm
    }
}
