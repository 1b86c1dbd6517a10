import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport
import ViTForgeTrain

/// Measures the inference latency of model shapes on one device, for `--target-latency MS --latency-batch B`: the
/// only budget that sees what a user deploys against (MACs ignore that LayerNorm, softmax and small GEMMs do not
/// shrink in proportion). Latency does not depend on the weights' values, so a shape is timed with initialised
/// weights; each shape is timed once per meter (bisection revisits shapes as it converges).
public final class LatencyMeter {
    public let batch: Int
    /// Times one shape: a median over forwards on a device, or a cost model given by a test, so that what the
    /// solver does with latencies is checked without reading a clock on a shared machine.
    private let measure: (ViTConfig) throws -> Double
    private var measured: [(config: ViTConfig, milliseconds: Double)] = []
    /// Shapes timed so far (a shape asked for again is not timed again): what a solve reports as its real
    /// measurements.
    public var measurements: Int { measured.count }

    /// A measured latency within this share of the target meets it, and one this far over the smallest cut's is
    /// out of reach: a median of 7 forwards still moves by about ±5% on a shared machine (more under a load of 5
    /// on 2 cores), so two measurements of one shape can differ by 10%, and a solve that aims closer chases noise.
    public static let tolerance = 0.1

    /// The device's meter; under `VITFORGE_FAULT_LATENCY_MS_PER_GMAC` (a fault-injection build) the cost model.
    public convenience init(backend: Backend, batch: Int, warmup: Int = 2, runs: Int = 7) {
        if let perGMAC = FaultInjection.latencyMillisecondsPerGMAC {
            self.init(batch: batch) { config in perGMAC * Double(config.cost().macs * batch) / 1e9 }
            return
        }
        self.init(batch: batch) { config in
            let model = try VisionTransformer(weights: .initialized(config: config, seed: 0), backend: backend)
            return try model.timeInference(batch: batch, warmup: warmup, runs: runs).latencyMsMedian
        }
    }

    /// A meter whose latencies come from `measure` (milliseconds for one batch of a model of that shape).
    public init(batch: Int, measure: @escaping (ViTConfig) throws -> Double) {
        self.batch = batch
        self.measure = measure
    }

    /// Median latency of one batch through a model of shape `config`, in milliseconds. In a data-parallel run
    /// rank 0 times it and every rank uses its number, so that all ranks solve a latency budget to the same plan.
    public func milliseconds(_ config: ViTConfig) throws -> Double {
        if let known = measured.first(where: { $0.config == config }) { return known.milliseconds }
        let collective = Collectives.world
        var value = 0.0
        if collective.isMain { value = try measure(config) }
        if collective.size > 1 { value = try collective.sum([value])[0] }
        measured.append((config, value))
        return value
    }
}
