import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics
@testable import ViTForgeTrain

/// 10 AdamW steps on the fixture's reference batch against PyTorch's float64 run (`fm-*-adamw.safetensors`): the
/// loss before each step, and three parameters after the tenth.
@Suite(.serialized)
struct AdamWFixtureTests {
    /// Heads are not in a plain timm file's shapes; the fixture facts say fm-vit-b has 4, fm-vit-c 2.
    static let heads = ["fm-vit-b": 4, "fm-vit-c": 2]

    @Test("10 AdamW steps reproduce PyTorch's losses and weights", arguments: ["fm-vit-c", "fm-vit-b"],
          TrainTestBackends.all)
    func tenSteps(model: String, device: TrainBackend) throws {
        let backend = device.backend
        let weights = try ViTWeights.load(path: fixture(model + ".safetensors"), heads: Self.heads[model])
        let reference = try SafetensorsFile(path: fixture(model + "-ref.safetensors"))
        let expected = try SafetensorsFile(path: fixture(model + "-adamw.safetensors"))
        let labels = try reference.int64s("labels").map { Int32($0) }
        let batch = labels.count
        let vit = try VisionTransformer(weights: weights, backend: backend)
        let images = try backend.makeBuffer(reference.floats("input"))
        let labelBuffer = try backend.makeBuffer(labels)
        // The fixture: lr 1e-3 constant, betas (0.9, 0.999), eps 1e-8, weight decay 0.05 (timm's policy).
        let optimizer = try AdamW(model: vit, settings: AdamWSettings(weightDecay: 0.05))
        let loss = try TrainingLoss(backend: backend, classes: weights.config.classes, maximumBatch: batch)
        let schedule = LearningRateSchedule.constant(1e-3)

        let expectedLosses = try expected.floats("losses")
        for step in 0 ..< 10 {
            try vit.zeroGradients()
            let value = try loss.evaluate(student: vit, images: images, labels: labelBuffer, batch: batch,
                                          backward: true)
            #expect(abs(value.total - Double(expectedLosses[step])) < 1e-4,
                    "\(model) on \(backend.name): loss before step \(step + 1) \(value.total), PyTorch \(expectedLosses[step])")
            try optimizer.step(learningRate: schedule.learningRate(step: step))
        }
        #expect(optimizer.stepCount == 10)
        for name in expected.names where name.hasPrefix("after10.") {
            let parameter = String(name.dropFirst("after10.".count))
            let got = try backend.read(#require(vit.parameters[parameter]))
            let error = relativeError(got, try expected.floats(name))
            #expect(error < 1e-4, "\(model) on \(backend.name): \(parameter) relative error \(error) after 10 steps")
        }
    }

    @Test("weight decay follows timm: matrices and kernels only, not tokens, position embedding, biases or norms")
    func decayPolicy() throws {
        let config = ViTConfig.timm(imageSize: 9, patchSize: 3, inChannels: 1, classes: 3, embedDim: 6, depth: 1,
                                    heads: 2, distillationToken: true)
        let vit = try VisionTransformer(weights: randomWeights(config, seed: 3), backend: TrainTestBackends.cpu)
        let optimizer = try AdamW(model: vit, settings: AdamWSettings(weightDecay: 0.05))
        let decayed = try config.parameterSpecs().filter { try optimizer.weightDecay(of: $0.name) > 0 }.map(\.name)
        #expect(decayed == ["patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
                            "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "head.weight", "head_dist.weight"])
        #expect(try optimizer.weightDecay(of: "head.weight") == 0.05)
    }

    @Test("masked elements keep their value and moments; the rest trains")
    func masks() throws {
        let config = tinyConfig()
        let backend = TrainTestBackends.cpu
        let vit = try VisionTransformer(weights: randomWeights(config, seed: 5), backend: backend)
        let optimizer = try AdamW(model: vit, settings: AdamWSettings())
        let name = "blocks.0.mlp.fc1.weight"
        let before = try backend.read(#require(vit.parameters[name]))
        let mask = (0 ..< before.count).map { Float($0 % 3 == 0 ? 0 : 1) }
        try optimizer.setMask(name, mask)
        #expect(optimizer.maskedParameters == [name])
        let batches = SyntheticBatches(config: config)
        try vit.zeroGradients()
        let loss = try TrainingLoss(backend: backend, classes: config.classes, maximumBatch: 5)
        var images = [Float](repeating: 0, count: 5 * batches.imageElements)
        var labels = [Int32](repeating: 0, count: 5)
        let count = try images.withUnsafeMutableBufferPointer { i in
            try labels.withUnsafeMutableBufferPointer { l in try batches.fill(epoch: 0, index: 0, images: i, labels: l) }
        }
        _ = try loss.evaluate(student: vit, images: backend.makeBuffer(images), labels: backend.makeBuffer(labels),
                              batch: count, backward: true)
        try optimizer.step(learningRate: 1e-2)
        let after = try backend.read(#require(vit.parameters[name]))
        let state = try optimizer.hostState(name)
        for i in 0 ..< before.count {
            if mask[i] == 0 {
                #expect(after[i].bitPattern == before[i].bitPattern && state.firstMoment[i] == 0)
            }
        }
        #expect(zip(before, after).enumerated().contains { mask[$0.offset] == 1 && $0.element.0 != $0.element.1 })
        #expect(throws: TrainingError.self) { try optimizer.setMask(name, [1, 0]) }
    }
}
