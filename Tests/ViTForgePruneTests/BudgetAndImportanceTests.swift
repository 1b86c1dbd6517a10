import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

struct DependencyGroupTests {
    @Test("groups cover every prunable axis exactly once", arguments: Variant.allCases)
    func groupsPartitionTheAxes(variant: Variant) throws {
        let config = irregularConfig(variant)
        let spaces = try config.channelSpaces()
        let axes = try config.parameterAxes()
        #expect(axes.map(\.name) == config.parameterSpecs().map(\.name))
        // Residual: one slice per residual axis in every group, each channel once.
        let residualAxes = axes.flatMap { p in p.roles.enumerated().filter { $0.element == .residual }.map { "\(p.name)#\($0.offset)" } }
        let residual = try #require(spaces.first { $0.kind == .residual })
        #expect(residual.groups.count == config.residualWidth)
        for group in residual.groups {
            #expect(group.slices.map { "\($0.tensor)#\($0.axis)" } == residualAxes)
            #expect(group.slices.allSatisfy { $0.indices == [group.index] })
        }
        for (b, block) in config.blocks.enumerated() {
            func rows(_ kind: SpaceKind, tensor: String) -> [Int] {
                spaces.first { $0.kind == kind }!.groups.flatMap { $0.slices.filter { $0.tensor == tensor }.flatMap(\.indices) }
            }
            let qkv = "blocks.\(b).attn.qkv.weight", proj = "blocks.\(b).attn.proj.weight"
            // Heads partition the qkv rows and proj columns; q/k dims and v dims partition them too.
            #expect(rows(.heads(block: b), tensor: qkv).sorted() == Array(0..<block.qkvRows))
            #expect(rows(.heads(block: b), tensor: proj).sorted() == Array(0..<block.attentionWidth))
            #expect((rows(.qkDims(block: b), tensor: qkv) + rows(.vDims(block: b), tensor: qkv)).sorted()
                    == Array(0..<block.qkvRows))
            #expect(rows(.vDims(block: b), tensor: proj).sorted() == Array(0..<block.attentionWidth))
            #expect(rows(.mlpHidden(block: b), tensor: "blocks.\(b).mlp.fc2.weight") == Array(0..<block.mlpHidden))
            if config.qkvBias {
                #expect(rows(.heads(block: b), tensor: "blocks.\(b).attn.qkv.bias").sorted() == Array(0..<block.qkvRows))
            }
        }
        let description = try config.channelSpaceDescription()
        #expect(description.contains("blocks.2.mlpHidden: 7 groups"))
    }

    @Test func unknownParameterIsAnError() {
        #expect(ViTConfig.roles(of: "blocks.0.ls1.gamma") == nil)
    }
}

struct ImportanceTests {
    @Test func magnitudeSumsEverySliceOfTheGroup() throws {
        var generator = SeededGenerator(seed: 21)
        let config = irregularConfig(.tokenPooling)
        let weights = try randomWeights(config, generator: &generator)
        let space = try config.channelSpaces().first { $0.kind == .mlpHidden(block: 1) }!
        let l1 = Importance.magnitude(space, weights: weights, norm: .l1)
        let l2 = Importance.magnitude(space, weights: weights, norm: .l2)
        let fc1 = weights["blocks.1.mlp.fc1.weight"]!.values, b1 = weights["blocks.1.mlp.fc1.bias"]!.values
        let fc2 = weights["blocks.1.mlp.fc2.weight"]!.values
        let width = config.residualWidth, hidden = config.blocks[1].mlpHidden
        for j in 0..<hidden {
            let values = (0..<width).map { fc1[j * width + $0] } + [b1[j]] + (0..<width).map { fc2[$0 * hidden + j] }
            #expect(abs(l1[j] - values.reduce(0) { $0 + abs(Double($1)) }) < 1e-9)
            #expect(abs(l2[j] - values.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()) < 1e-9)
        }
    }

    /// Taylor scores from our accumulated gradients equal those from PyTorch's gradients in the fixture.
    @Test func taylorMatchesPyTorchGradients() throws {
        let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        let ref = try SafetensorsFile(path: fixture("fm-vit-c-ref.safetensors"))
        let labels = try ref.int64s("labels").map { Int32($0) }
        let images = try InMemoryImages(images: ref.floats("input"), labels: labels, imageElements: 28 * 28)
        let model = try VisionTransformer(weights: weights, backend: CPUBackend())
        // Two batches of 8: the gradients of two half-batch means sum to twice the full-batch mean's.
        let ours = try Importance.accumulatedGradients(of: model, images: images, limit: nil, batchSize: 8)
        var theirs: [String: [Float]] = [:]
        for spec in weights.config.parameterSpecs() { theirs[spec.name] = try ref.floats("grad." + spec.name).map { 2 * $0 } }
        for space in try weights.config.channelSpaces() where [.residual, .heads(block: 1), .mlpHidden(block: 3)].contains(space.kind) {
            let a = Importance.taylor(space, weights: weights, gradients: ours)
            let b = Importance.taylor(space, weights: weights, gradients: theirs)
            let scale = b.max() ?? 1
            #expect(maxDifference(a, b) < 2e-3 * scale, "\(space.kind): \(maxDifference(a, b)) vs scale \(scale)")
        }
    }

    @Test func randomIsSeeded() throws {
        let space = try irregularConfig(.tokenPooling).channelSpaces()[0]
        #expect(Importance.random(space, seed: 1) == Importance.random(space, seed: 1))
        #expect(Importance.random(space, seed: 1) != Importance.random(space, seed: 2))
    }
}

struct BudgetTests {
    static let weights = Result { try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2) }

    enum Method: String, CaseIterable, Sendable { case magnitude, taylor, random, vbp }

    static func scored(_ method: Method, families: [SpaceFamily],
                       rounding: WidthRounding = .multiple(1)) throws -> ScoredSpaces {
        let weights = try Self.weights.get()
        let config = weights.config
        var generator = SeededGenerator(seed: 9)
        let pixels = (0..<(4 * 28 * 28)).map { _ in Float(generator.uniform()) }
        let images = try InMemoryImages(images: pixels, labels: [1, 2, 3, 4], imageElements: 28 * 28)
        switch method {
        case .magnitude:
            return try ScoredSpaces(config: config, families: families, rounding: rounding) {
                Importance.magnitude($0, weights: weights, norm: .l2)
            }
        case .taylor:
            let model = try VisionTransformer(weights: weights, backend: CPUBackend())
            let gradients = try Importance.accumulatedGradients(of: model, images: images, limit: nil, batchSize: 4)
            return try ScoredSpaces(config: config, families: families, rounding: rounding) {
                Importance.taylor($0, weights: weights, gradients: gradients)
            }
        case .random:
            return try ScoredSpaces(config: config, families: families, rounding: rounding) { Importance.random($0, seed: 5) }
        case .vbp:
            let model = try VisionTransformer(weights: weights, backend: CPUBackend())
            let statistics = try VarianceBasedPruning.statistics(of: model, images: images)
            return try VarianceBasedPruning.scoredSpaces(config: config, statistics: statistics, scope: .global,
                                                         rounding: rounding)
        }
    }

    @Test("--target-macs 0.6 lands within 2% of 60%", arguments: Method.allCases)
    func targetMacs(method: Method) throws {
        let config = try Self.weights.get().config
        let scored = try Self.scored(method, families: [.mlpHidden])
        let (plan, outcome) = try Budget(target: .macs(0.6)).solve(config: config, nativeFamilies: [.mlpHidden],
                                                                    planFor: scored.plan)
        #expect(abs(outcome.macFraction - 0.6) < 0.02 * 0.6, "\(method): \(outcome.summary)")
        #expect(try plan.prunedConfig(of: config) == outcome.config)
        let (_, params) = try Budget(target: .params(0.8)).solve(config: config, nativeFamilies: [.mlpHidden],
                                                                 planFor: scored.plan)
        #expect(abs(params.parameterFraction - 0.8) < 0.02 * 0.8, "\(method): \(params.summary)")
    }

    /// The latency budget with a cost model in place of the clock: a fixed overhead, a term per MAC, and a penalty
    /// for MLP widths that are not multiples of 8 (as a GEMM sees them), so latency is not proportional to MACs.
    /// The solver must land within 10% of the target and report the latency of the shape it chose.
    @Test("--target-latency lands within 10% of the target (latencies from a cost model, not a clock)",
          arguments: [0.45, 0.7, 0.9])
    func targetLatency(share: Double) throws {
        let config = try Self.weights.get().config
        let scored = try Self.scored(.magnitude, families: [.mlpHidden])
        func milliseconds(_ shape: ViTConfig) -> Double {
            let awkward = shape.blocks.filter { $0.mlpHidden % 8 != 0 }.count
            return 0.8 + 2e-7 * Double(shape.cost().macs) * 64 + 0.05 * Double(awkward)
        }
        var measurements = 0
        let meter = LatencyMeter(batch: 64) { shape in
            measurements += 1
            return milliseconds(shape)
        }
        let target = share * milliseconds(config)
        let (plan, outcome) = try Budget(target: .latency(milliseconds: target, batch: 64))
            .solve(config: config, nativeFamilies: [.mlpHidden], latency: meter, planFor: scored.plan)
        let achieved = try #require(outcome.measuredLatencyMilliseconds)
        #expect(abs(achieved - target) <= 0.1 * target, "\(outcome.summary)")
        #expect(achieved == milliseconds(try plan.prunedConfig(of: config)))
        // Each shape is timed once: the bisection's 14 steps and the full model, fewer when shapes repeat.
        #expect(measurements <= 15)
    }

    @Test func targetOverHeadsAndMLPTogether() throws {
        let config = try Self.weights.get().config
        let scored = try Self.scored(.magnitude, families: [.mlpHidden, .heads, .residual])
        let (_, outcome) = try Budget(keepResidual: 0.9, target: .macs(0.6))
            .solve(config: config, nativeFamilies: [.mlpHidden], planFor: scored.plan)
        #expect(abs(outcome.macFraction - 0.6) < 0.02 * 0.6, "\(outcome.summary)")
        #expect(outcome.config.residualWidth == 86)
        let (_, heads) = try Budget(keepHeads: 0.5).solve(config: config, nativeFamilies: [], planFor: scored.plan)
        // Global ranking keeps the 4 best of 8 heads, then every block keeps at least one (refusing to empty it).
        #expect(heads.config.blocks.allSatisfy { $0.heads >= 1 })
        #expect((4...5).contains(heads.config.blocks.map(\.heads).reduce(0, +)))
        #expect(throws: PruneError.self) {
            try Budget(keepMLP: 0.5, target: .macs(0.6)).solve(config: config, nativeFamilies: [.mlpHidden],
                                                                 planFor: scored.plan)
        }
        #expect(throws: PruneError.self) { try Budget(keepMLP: 1.5).validate() }
    }

    @Test func roundToKeepsMultiples() throws {
        let config = try Self.weights.get().config
        for scope in [RankingScope.global, .block] {
            var scored = try Self.scored(.magnitude, families: [.mlpHidden], rounding: .multiple(8))
            scored.scope = scope
            for fraction in [0.01, 0.3, 0.5, 0.77, 1.0] {
                let plan = try scored.plan([.mlpHidden: fraction])
                for keep in plan.blocks {
                    #expect(keep.mlpHidden.count % 8 == 0 && keep.mlpHidden.count >= 8 && keep.mlpHidden.count <= 384)
                }
            }
            let (_, outcome) = try Budget(target: .macs(0.6), rounding: .multiple(8))
                .solve(config: config, nativeFamilies: [.mlpHidden], planFor: scored.plan)
            #expect(abs(outcome.macFraction - 0.6) < 0.02 * 0.6, "\(scope): \(outcome.summary)")
        }
    }
}
