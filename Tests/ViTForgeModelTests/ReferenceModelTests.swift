import Foundation
import Testing
import ViTForgeDevice
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport

/// The Swift model against the float64 reference ViT on tiny, deliberately irregular configurations: every block
/// has its own head count, q/k width ≠ v width, its own MLP width and a custom attention scale (what pruning
/// produces), one block has heads of different widths and one has no heads at all, at odd sizes. Logits are compared directly; gradients against central finite differences of the
/// reference's loss, so both the forward and the hand-written backward are checked independently of PyTorch.
@Suite(.serialized)
struct ReferenceModelTests {
    enum Variant: String, CaseIterable, Sendable {
        case tokenPooling, averagePooling, distilled
    }

    static func configuration(_ variant: Variant) -> ViTConfig {
        let blocks = [
            BlockConfig(heads: 2, qkDim: 3, vDim: 5, mlpHidden: 11, attentionScale: 0.37),
            BlockConfig(heads: 3, qkDim: 4, vDim: 2, mlpHidden: 7, attentionScale: 0.5),
            BlockConfig(heads: 1, qkDim: 5, vDim: 3, mlpHidden: 9, attentionScale: 0.41),
            // Heads of different widths (ViT-Slim's extraction): each head its own q/k and v width.
            BlockConfig(qkDims: [3, 1, 4], vDims: [2, 5, 1], mlpHidden: 6, attentionScale: 0.45),
            // Every head pruned away: attention adds only proj's bias.
            BlockConfig(qkDims: [], vDims: [], mlpHidden: 5, attentionScale: 0.45),
        ]
        return ViTConfig(imageSize: 9, patchSize: 3, inChannels: 2, classes: 5, residualWidth: 13, blocks: blocks,
                         qkvBias: variant != .averagePooling, pooling: variant == .averagePooling ? .avg : .token,
                         classToken: true, distillationToken: variant == .distilled)
    }

    struct Problem {
        let config: ViTConfig
        let weights: ViTWeights
        let reference: ReferenceViT
        let images: [Float]
        let labels: [Int32]
        let batch = 3
    }

    static func problem(_ variant: Variant, seed: UInt64) throws -> Problem {
        var generator = SeededGenerator(seed: seed)
        let config = configuration(variant)
        var tensors: [String: HostTensor] = [:]
        var doubles: [String: [Double]] = [:]
        for spec in config.parameterSpecs() {
            let isNormWeight = spec.name.hasSuffix("norm1.weight") || spec.name.hasSuffix("norm2.weight")
                || spec.name == "norm.weight" || spec.name == "fc_norm.weight"
            let values = (0..<spec.elementCount).map { _ in
                Float(isNormWeight ? 1 + 0.2 * generator.uniform() : 0.4 * generator.uniform())
            }
            tensors[spec.name] = HostTensor(shape: spec.shape, values: values)
            doubles[spec.name] = values.map(Double.init)
        }
        let weights = try ViTWeights(config: config, tensors: tensors)
        let reference = ReferenceViT(config: config, parameters: doubles)
        let batch = 3
        let images = (0..<(batch * config.inChannels * config.imageSize * config.imageSize)).map { _ in
            Float(generator.uniform())
        }
        let labels = (0..<batch).map { _ in Int32(generator.below(config.classes)) }
        return Problem(config: config, weights: weights, reference: reference, images: images, labels: labels)
    }

    @Test("logits equal the float64 reference", arguments: Variant.allCases, ModelTestBackends.all)
    func logitsMatchReference(variant: Variant, device: ModelBackend) throws {
        let problem = try Self.problem(variant, seed: 0x5EED + UInt64(variant.hashValue & 0xFF))
        let backend = device.backend
        let vit = try VisionTransformer(weights: problem.weights, backend: backend)
        let logits = try backend.read(vit.forward(images: backend.makeBuffer(problem.images), batch: problem.batch),
                                      count: problem.batch * problem.config.classes)
        let expected = problem.reference.logits(problem.images.map(Double.init), batch: problem.batch).flatMap { $0 }
        let error = zip(logits, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(error < 2e-5, "\(variant) on \(backend.name): max |logit error| \(error)")
    }

    /// Inference shares one block's buffers across all blocks (sized for the widest) and two residual buffers; it
    /// must compute exactly what the training layout computes, on blocks of different widths, and a backward
    /// after it must refuse rather than read the shared buffers.
    @Test("an inference forward equals the training forward bit for bit; backward after it refuses",
          arguments: Variant.allCases, ModelTestBackends.all)
    func inferenceLayoutMatchesTrainingLayout(variant: Variant, device: ModelBackend) throws {
        let problem = try Self.problem(variant, seed: 0x1AFE + UInt64(variant.rawValue.count))
        let backend = device.backend
        let vit = try VisionTransformer(weights: problem.weights, backend: backend)
        let images = try backend.makeBuffer(problem.images)
        let count = problem.batch * problem.config.classes
        let training = try backend.read(vit.forward(images: images, batch: problem.batch), count: count)
        let inference = try backend.read(vit.forward(images: images, batch: problem.batch, keepingActivations: false),
                                         count: count)
        #expect(training == inference, "\(variant) on \(backend.name): \(training) vs \(inference)")
        let expected = problem.reference.logits(problem.images.map(Double.init), batch: problem.batch).flatMap { $0 }
        let error = zip(inference, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(error < 2e-5, "\(variant) on \(backend.name): max |logit error| \(error)")
        try vit.zeroGradients()
        #expect(throws: BackendError.self) { try vit.backward(dLogits: backend.makeBuffer([Float](repeating: 0, count: count))) }
        #expect(throws: BackendError.self) { try vit.mlpHiddenActivations(block: 0) }
    }

    /// The model of `weights` on `backend` after one cross-entropy forward and backward on `problem`'s batch.
    static func lossWithGradients(_ weights: ViTWeights, _ problem: Problem, _ backend: any Backend) throws
        -> (VisionTransformer, Double) {
        let vit = try VisionTransformer(weights: weights, backend: backend)
        try vit.zeroGradients()
        let loss = try vit.crossEntropy(images: backend.makeBuffer(problem.images),
                                        labels: backend.makeBuffer(problem.labels), batch: problem.batch,
                                        backward: true)
        return (vit, loss)
    }

    @Test("every parameter's gradient equals finite differences of the reference loss",
          arguments: Variant.allCases, ModelTestBackends.all)
    func gradientsMatchFiniteDifferences(variant: Variant, device: ModelBackend) throws {
        let problem = try Self.problem(variant, seed: 0xF1D1 + UInt64(variant.rawValue.count))
        let backend = device.backend
        let (vit, loss) = try Self.lossWithGradients(problem.weights, problem, backend)
        let images = problem.images.map(Double.init)
        let labels = problem.labels.map(Int.init)
        let referenceLoss = problem.reference.loss(images, labels: labels, batch: problem.batch)
        #expect(abs(loss - referenceLoss) < 1e-5, "loss \(loss) vs reference \(referenceLoss)")

        var generator = SeededGenerator(seed: 77)
        let h = 1e-5
        for spec in problem.config.parameterSpecs() {
            let gradient = try backend.read(vit.gradient(spec.name), count: spec.elementCount)
            // A few random elements per tensor (all of them for small ones): each costs two reference forwards.
            let probes = spec.elementCount <= 4 ? Array(0..<spec.elementCount)
                : (0..<4).map { _ in generator.below(spec.elementCount) }
            for index in probes {
                var plus = problem.reference, minus = problem.reference
                plus.parameters[spec.name]![index] += h
                minus.parameters[spec.name]![index] -= h
                let finiteDifference = (plus.loss(images, labels: labels, batch: problem.batch)
                    - minus.loss(images, labels: labels, batch: problem.batch)) / (2 * h)
                let got = Double(gradient[index])
                #expect(abs(got - finiteDifference) <= 2e-3 * abs(finiteDifference) + 2e-5,
                        "\(variant) on \(backend.name): d loss / d \(spec.name)[\(index)] = \(got), finite difference \(finiteDifference)")
            }
        }
    }
}
