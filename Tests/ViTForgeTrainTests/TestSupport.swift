import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgeTrain

/// The backends the training tests run on: the CPU backend, and the first OpenCL device when there is one (PoCL on
/// CI). One instance each, shared by every test, so kernels compile once per run.
struct TrainBackend: @unchecked Sendable, CustomTestStringConvertible {
    let backend: any Backend
    var testDescription: String { backend.kind.rawValue }
}

enum TrainTestBackends {
    static let all: [TrainBackend] = {
        var list = [TrainBackend(backend: cpu)]
        if let device = DeviceSelection.explicitChoice(from: (try? OpenCLRuntime.devices()) ?? []),
           let backend = try? OpenCLBackend(device: device) {
            list.append(TrainBackend(backend: backend))
        }
        return list
    }()

    static let cpu = CPUBackend()
}

extension TrainingRandom {
    /// Uniform in [-1, 1).
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) * 2 - 1 }
}

/// A tiny irregular ViT (per-block heads, q/k ≠ v widths, odd sizes) as pruning produces, token pooling.
func tinyConfig() -> ViTConfig {
    ViTConfig(imageSize: 9, patchSize: 3, inChannels: 2, classes: 5, residualWidth: 13,
              blocks: [
                  BlockConfig(heads: 2, qkDim: 3, vDim: 5, mlpHidden: 11, attentionScale: 0.37),
                  BlockConfig(heads: 3, qkDim: 4, vDim: 2, mlpHidden: 7),
              ],
              qkvBias: true, pooling: .token, classToken: true)
}

/// Random weights for `config` (LayerNorm gains near 1, everything else small), reproducible from `seed`.
func randomWeights(_ config: ViTConfig, seed: UInt64) throws -> ViTWeights {
    var random = TrainingRandom(seed: seed)
    var tensors: [String: HostTensor] = [:]
    for spec in config.parameterSpecs() {
        let isNormWeight = spec.name.hasSuffix("norm1.weight") || spec.name.hasSuffix("norm2.weight")
            || spec.name == "norm.weight" || spec.name == "fc_norm.weight"
        let values = (0..<spec.elementCount).map { _ in
            Float(isNormWeight ? 1 + 0.2 * random.uniform() : 0.4 * random.uniform())
        }
        tensors[spec.name] = HostTensor(shape: spec.shape, values: values)
    }
    return try ViTWeights(config: config, tensors: tensors)
}

/// A deterministic stand-in for the data layer: batch (epoch, index) is generated from a generator seeded by
/// (seed, epoch, index), so any batch can be produced in any order, as a resumed run needs. The last batch of each
/// epoch is partial.
final class SyntheticBatches: TrainingBatches {
    let batchesPerEpoch: Int
    let maximumBatch: Int
    let imageElements: Int
    let dataSeed: UInt64
    let classes: Int
    let lastBatch: Int

    init(config: ViTConfig, batchesPerEpoch: Int = 4, maximumBatch: Int = 5, lastBatch: Int = 3, seed: UInt64 = 11) {
        self.batchesPerEpoch = batchesPerEpoch
        self.maximumBatch = maximumBatch
        self.lastBatch = lastBatch
        imageElements = config.inChannels * config.imageSize * config.imageSize
        classes = config.classes
        dataSeed = seed
    }

    func fill(epoch: Int, index: Int, images: UnsafeMutableBufferPointer<Float>,
              labels: UnsafeMutableBufferPointer<Int32>) throws -> Int {
        var random = TrainingRandom(seed: dataSeed &* 1_000_003 &+ UInt64(epoch) &* 1009 &+ UInt64(index))
        let count = index == batchesPerEpoch - 1 ? lastBatch : maximumBatch
        for i in 0 ..< count * imageElements { images[i] = Float(random.uniform()) }
        for i in 0 ..< count { labels[i] = Int32(random.next() % UInt64(classes)) }
        return count
    }
}

/// Relative L2 error ‖a − b‖ / ‖b‖ in float64.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var difference = 0.0, reference = 0.0
    for (x, y) in zip(a, b) {
        difference += (Double(x) - Double(y)) * (Double(x) - Double(y))
        reference += Double(y) * Double(y)
    }
    return (difference / max(reference, 1e-300)).squareRoot()
}
