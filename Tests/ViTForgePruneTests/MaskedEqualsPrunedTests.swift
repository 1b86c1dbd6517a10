import Foundation
import Testing
import ViTForgeDevice
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

/// The product's 0/1 masks against surgery: the full model with a plan's channels masked (residual width, heads,
/// q/k dims, v dims, MLP neurons) computes what the physically pruned model computes, on every backend.
struct MaskedEqualsPrunedTests {
    static let backends: [(name: String, backend: any Backend)] = {
        var list: [(String, any Backend)] = [("cpu", CPUBackend())]
        if let device = DeviceSelection.explicitChoice(from: (try? OpenCLRuntime.devices()) ?? []),
           let backend = try? OpenCLBackend(device: device) {
            list.append(("opencl", backend))
        }
        return list
    }()

    @Test("masked full model == pruned model (float32, relative 1e-5), random plans over every space",
          arguments: Variant.allCases, SurgeryInvariantTests.Spaces.allCases)
    func maskedEqualsPruned(variant: Variant, spaces: SurgeryInvariantTests.Spaces) throws {
        var generator = SeededGenerator(seed: 0xA5C ^ spaces.rawValue.hashStable ^ variant.rawValue.hashStable)
        let config = irregularConfig(variant)
        let weights = try randomWeights(config, generator: &generator)
        let plan = try SurgeryInvariantTests.randomPlan(config, spaces, generator: &generator)
        let pruned = try Surgery.prune(weights, plan: plan)
        let batch = 3
        let images = randomImages(config, batch: batch, generator: &generator)
        for (name, backend) in Self.backends {
            let full = try VisionTransformer(weights: weights, backend: backend)
            let masks = try plan.channelMasks(of: config, backend: backend)
            try full.setMasks(masks.blocks, residual: masks.residual)
            let small = try VisionTransformer(weights: pruned, backend: backend)
            let count = batch * config.classes
            let masked = try backend.read(full.forward(images: backend.makeBuffer(images), batch: batch), count: count)
            let expected = try backend.read(small.forward(images: backend.makeBuffer(images), batch: batch),
                                            count: count)
            let scale = expected.map { abs(Double($0)) }.max() ?? 1
            let error = zip(masked, expected).map { abs(Double($0) - Double($1)) }.max() ?? .infinity
            #expect(error <= 1e-5 * max(scale, 1), "\(variant) \(spaces) on \(name): max error \(error)")
        }
    }
}
