import Foundation
import Testing
import ViTForgeDevice
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport

/// Static token pruning (issue 28, part 3): a model that physically gathers each block's kept tokens equals the
/// full model in which a dropped token stops being a key and value from that block on (an attention mask), on the
/// irregular reference configurations, with token pooling, average pooling and a distillation token, over random
/// monotone token sets, one of which ends with a block that keeps only the prefix tokens.
@Suite(.serialized)
struct TokenPruningTests {
    typealias Variant = ReferenceModelTests.Variant

    static func tokenPruned(_ variant: Variant, seed: UInt64) throws -> (ReferenceModelTests.Problem, [[Int]]) {
        let problem = try ReferenceModelTests.problem(variant, seed: seed)
        var generator = SeededGenerator(seed: seed ^ 0x70CE)
        let sets = randomTokenSets(problem.config, prefixOnlyFrom: variant == .averagePooling ? nil : 3,
                                   generator: &generator)
        return (problem, sets)
    }

    @Test("float64: gathering the kept rows == masking dropped tokens as keys and values (≤ 1e-9)",
          arguments: Variant.allCases, [UInt64(1), 2, 3])
    func gatheredEqualsMaskedInFloat64(variant: Variant, seed: UInt64) throws {
        let (problem, sets) = try Self.tokenPruned(variant, seed: 0x7A00 + seed)
        var masked = problem.reference
        masked.tokenSets = sets
        var gathered = masked
        gathered.tokenPruning = .gathered
        let images = problem.images.map(Double.init)
        let a = masked.logits(images, batch: problem.batch).flatMap { $0 }
        let b = gathered.logits(images, batch: problem.batch).flatMap { $0 }
        let full = problem.reference.logits(images, batch: problem.batch).flatMap { $0 }
        let error = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        #expect(error <= 1e-9, "\(variant) \(sets): max error \(error)")
        // The sets do change the function (else the comparison above proves nothing).
        #expect(zip(a, full).map { abs($0 - $1) }.max() ?? 0 > 1e-6)
    }

    @Test("float32: the physically token-pruned model == the masked float64 model (relative 1e-5), both layouts",
          arguments: Variant.allCases, ModelTestBackends.all)
    func prunedModelEqualsMaskedReference(variant: Variant, device: ModelBackend) throws {
        for seed in [UInt64(11), 12] {
            let (problem, sets) = try Self.tokenPruned(variant, seed: 0x7B00 + seed)
            var weights = problem.weights
            try weights.setTokenSets(sets)
            var reference = problem.reference
            reference.tokenSets = sets
            let expected = reference.logits(problem.images.map(Double.init), batch: problem.batch).flatMap { $0 }
            let backend = device.backend
            let vit = try VisionTransformer(weights: weights, backend: backend)
            let images = try backend.makeBuffer(problem.images)
            let count = problem.batch * problem.config.classes
            let training = try backend.read(vit.forward(images: images, batch: problem.batch), count: count)
            let inference = try backend.read(vit.forward(images: images, batch: problem.batch,
                                                         keepingActivations: false), count: count)
            #expect(training == inference, "\(variant) on \(backend.name): the two layouts differ")
            let scale = max(expected.map(abs).max() ?? 1, 1)
            let error = zip(training, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
            #expect(error <= 1e-5 * scale, "\(variant) \(sets) on \(backend.name): max error \(error)")
        }
    }

    @Test("gradients through the token gathers equal finite differences of the masked reference",
          arguments: Variant.allCases, ModelTestBackends.all)
    func gradientsMatchFiniteDifferences(variant: Variant, device: ModelBackend) throws {
        let (problem, sets) = try Self.tokenPruned(variant, seed: 0x7C00)
        var weights = problem.weights
        try weights.setTokenSets(sets)
        var reference = problem.reference
        reference.tokenSets = sets
        let backend = device.backend
        let (vit, loss) = try ReferenceModelTests.lossWithGradients(weights, problem, backend)
        let images = problem.images.map(Double.init)
        let labels = problem.labels.map(Int.init)
        #expect(abs(loss - reference.loss(images, labels: labels, batch: problem.batch)) < 1e-5)
        var generator = SeededGenerator(seed: 91)
        let h = 1e-5
        // The embedding (every row, through every scatter), the first and last block, and the head.
        let names = ["pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.norm1.weight",
                     "blocks.4.mlp.fc1.weight", "blocks.4.norm2.bias", "head.weight"]
        for name in names {
            guard let spec = problem.config.parameterSpecs().first(where: { $0.name == name }) else { continue }
            let gradient = try backend.read(vit.gradient(name), count: spec.elementCount)
            for index in (0..<6).map({ _ in generator.below(spec.elementCount) }) {
                var plus = reference, minus = reference
                plus.parameters[name]![index] += h
                minus.parameters[name]![index] -= h
                let finiteDifference = (plus.loss(images, labels: labels, batch: problem.batch)
                    - minus.loss(images, labels: labels, batch: problem.batch)) / (2 * h)
                let got = Double(gradient[index])
                #expect(abs(got - finiteDifference) <= 2e-3 * abs(finiteDifference) + 2e-5,
                        "\(variant) on \(backend.name): d loss / d \(name)[\(index)] = \(got), fd \(finiteDifference)")
            }
        }
    }

    @Test("token sets survive a safetensors round trip as config version 3; a model without them writes version 2")
    func tokenSetsRoundTrip() throws {
        let (problem, sets) = try Self.tokenPruned(.distilled, seed: 0x7D00)
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try problem.weights.save(to: folder.path("plain.safetensors"))
        let plain = try ViTWeights.load(path: folder.path("plain.safetensors"))
        #expect(plain.config.tokenSets == nil && plain.config.version == ViTConfig.currentVersion)
        #expect(!problem.config.jsonString().contains("tokenSets"))
        var weights = problem.weights
        try weights.setTokenSets(sets)
        try weights.save(to: folder.path("pruned.safetensors"))
        let loaded = try ViTWeights.load(path: folder.path("pruned.safetensors"))
        #expect(loaded.config.tokenSets == sets)
        #expect(loaded.config.version == ViTConfig.tokenSetsVersion)
        #expect(loaded.tensors == weights.tensors)
    }

    @Test("bad token sets are refused with one line naming the problem")
    func badTokenSetsAreRefused() throws {
        let config = ReferenceModelTests.configuration(.distilled)
        let all = Array(0..<config.tokens)
        let cases: [([[Int]], String)] = [
            ([all], "sets for"),
            (Array(repeating: [0, 1, 5, 3], count: config.depth), "ascending"),
            ([[0, 1, 2, 3]] + Array(repeating: [0, 1, 4], count: config.depth - 1), "earlier block"),
            (Array(repeating: [1, 2, 3], count: config.depth), "class and distillation"),
            (Array(repeating: [0, 1, 99], count: config.depth), "outside"),
        ]
        for (sets, phrase) in cases {
            var changed = config
            changed.tokenSets = sets
            let problem = changed.problem() ?? ""
            #expect(problem.contains(phrase), "\(sets): \(problem)")
        }
        var average = ReferenceModelTests.configuration(.averagePooling)
        average.tokenSets = Array(repeating: [0], count: average.depth)
        #expect(average.problem()?.contains("average pooling") == true)
    }

    @Test("MACs count each block on its kept tokens")
    func macsCountKeptTokens() throws {
        let (problem, sets) = try Self.tokenPruned(.tokenPooling, seed: 0x7E00)
        var pruned = problem.config
        pruned.tokenSets = sets
        let full = problem.config.cost(), cost = pruned.cost()
        for (index, block) in problem.config.blocks.enumerated() {
            let t = Double(sets[index].count), n = Double(problem.config.tokens)
            let linear = Double(block.qkvRows + block.attentionWidth + 2 * block.mlpHidden) * 13
            // Linear layers scale with the tokens, attention's two products with their square.
            let expected = linear * t + Double(full.blocks[index].attentionScores + full.blocks[index].attentionValues)
                * (t * t) / (n * n)
            #expect(abs(Double(cost.blocks[index].macs) - expected) < 1, "block \(index)")
        }
        #expect(cost.patchEmbedMacs == full.patchEmbedMacs && cost.headMacs == full.headMacs)
    }

    @Test("monotoneTokenSets ORs from the last block back and always keeps the prefix tokens")
    func monotoneSets() {
        let keep: [[Bool]] = [
            [false, true, false, true, true],
            [false, false, true, true, false],
            [false, false, false, false, true],
        ]
        #expect(ViTConfig.monotoneTokenSets(keep, prefixTokens: 1) == [[0, 1, 2, 3, 4], [0, 2, 3, 4], [0, 4]])
        #expect(ViTConfig.monotoneTokenSets([[true, true], [true, true]], prefixTokens: 1) == nil)
    }
}
