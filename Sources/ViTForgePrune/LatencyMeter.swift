import ViTForgeDevice
import ViTForgeModel
import ViTForgeTrain

/// Measures the inference latency of model shapes on one device, for `--target-latency MS --latency-batch B`: the
/// only budget that sees what a user deploys against (MACs ignore that LayerNorm, softmax and small GEMMs do not
/// shrink in proportion). Latency does not depend on the weights' values, so a shape is timed with initialised
/// weights; each shape is timed once per meter (bisection revisits shapes as it converges).
public final class LatencyMeter {
    public let backend: Backend
    public let batch: Int
    public let warmup: Int
    public let runs: Int
    private var measured: [(config: ViTConfig, milliseconds: Double)] = []

    public init(backend: Backend, batch: Int, warmup: Int = 2, runs: Int = 7) {
        self.backend = backend
        self.batch = batch
        self.warmup = warmup
        self.runs = runs
    }

    /// Median latency of one batch through a model of shape `config`, in milliseconds. In a data-parallel run
    /// rank 0 times it and every rank uses its number, so that all ranks solve a latency budget to the same plan.
    public func milliseconds(_ config: ViTConfig) throws -> Double {
        if let known = measured.first(where: { $0.config == config }) { return known.milliseconds }
        let collective = Collectives.world
        var value = 0.0
        if collective.isMain {
            let model = try VisionTransformer(weights: .initialized(config: config, seed: 0), backend: backend)
            value = try model.timeInference(batch: batch, warmup: warmup, runs: runs).latencyMsMedian
        }
        if collective.size > 1 { value = try collective.sum([value])[0] }
        measured.append((config, value))
        return value
    }
}
