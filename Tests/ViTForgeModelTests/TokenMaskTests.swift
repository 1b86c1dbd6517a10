import Foundation
import Testing
import ViTForgeDevice
@testable import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport

/// Soft token masks (ViT-Slim's token search, issue 28 part 1): the model with a multiplier per (block, token
/// position) on the LayerNorm outputs feeding attention and the MLP equals the float64 reference with the same
/// multipliers, and the masks' gradients equal central finite differences of the reference's loss.
@Suite(.serialized)
struct TokenMaskTests {
    @Test("token-masked logits equal the reference; mask gradients equal finite differences",
          arguments: ReferenceModelTests.Variant.allCases, ModelTestBackends.all)
    func maskGradientsMatchFiniteDifferences(variant: ReferenceModelTests.Variant, device: ModelBackend) throws {
        let problem = try ReferenceModelTests.problem(variant, seed: 0x70C0 + UInt64(variant.rawValue.count))
        let config = problem.config
        var generator = SeededGenerator(seed: 0x70C1)
        let values = (0..<config.depth).map { _ in (0..<config.tokens).map { _ in Float(0.5 + 0.5 * generator.uniform()) } }
        let backend = device.backend
        let vit = try VisionTransformer(weights: problem.weights, backend: backend)
        let gradients = try values.map { try backend.zeros($0.count) }
        try vit.setTokenMasks(zip(values, gradients).map { ChannelMask(values: try backend.makeBuffer($0), gradient: $1) })
        var reference = problem.reference
        reference.softMasks = ReferenceViT.SoftMasks(qkvColumns: Array(repeating: nil, count: config.depth),
                                                     mlpHidden: Array(repeating: nil, count: config.depth))
        reference.softMasks?.tokens = values.map { $0.map(Double.init) }
        try vit.zeroGradients()
        let loss = try vit.crossEntropy(images: backend.makeBuffer(problem.images),
                                        labels: backend.makeBuffer(problem.labels), batch: problem.batch,
                                        backward: true)
        let images = problem.images.map(Double.init)
        let labels = problem.labels.map(Int.init)
        let referenceLoss = reference.loss(images, labels: labels, batch: problem.batch)
        #expect(abs(loss - referenceLoss) < 1e-5, "\(variant) on \(backend.name): loss \(loss) vs \(referenceLoss)")
        let inference = try backend.read(vit.forward(images: backend.makeBuffer(problem.images), batch: problem.batch,
                                                     keepingActivations: false), count: problem.batch * config.classes)
        let expected = reference.logits(images, batch: problem.batch).flatMap { $0 }
        #expect(zip(inference, expected).map { abs(Double($0) - $1) }.max() ?? .infinity < 2e-5)
        let h = 1e-5
        for block in [0, config.depth - 1] {
            let got = try backend.read(gradients[block])
            for position in 0..<config.tokens {
                var plus = reference, minus = reference
                plus.softMasks?.tokens?[block]?[position] += h
                minus.softMasks?.tokens?[block]?[position] -= h
                let finiteDifference = (plus.loss(images, labels: labels, batch: problem.batch)
                    - minus.loss(images, labels: labels, batch: problem.batch)) / (2 * h)
                #expect(abs(Double(got[position]) - finiteDifference) <= 2e-3 * abs(finiteDifference) + 2e-5,
                        "\(variant) on \(backend.name): block \(block) token \(position): \(got[position]) vs \(finiteDifference)")
            }
        }
    }

    @Test("a token-pruned model refuses token masks; a wrong count is refused")
    func badTokenMasksAreRefused() throws {
        let backend = CPUBackend()
        let problem = try ReferenceModelTests.problem(.tokenPooling, seed: 3)
        var weights = problem.weights
        try weights.setTokenSets(Array(repeating: [0, 1, 2], count: weights.config.depth))
        let mask = ChannelMask(values: try backend.makeBuffer([Float](repeating: 1, count: weights.config.tokens)))
        #expect(throws: BackendError.self) {
            try VisionTransformer(weights: weights, backend: backend).setTokenMasks(
                Array(repeating: mask, count: weights.config.depth))
        }
        #expect(throws: BackendError.self) {
            try VisionTransformer(weights: problem.weights, backend: backend).setTokenMasks([mask])
        }
    }
}
