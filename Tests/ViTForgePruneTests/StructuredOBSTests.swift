import Testing
import ViTForgeDevice
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

/// `--method obs`: every greedy step's predicted cost is the brute-force increase of the refit's objective (the
/// refit error plus its ridge terms; the error alone at λ = 0), and the first choice is the brute-force best.
struct StructuredOBSTests {
    /// The optimum of J for the inputs `kept`, by `LeastSquaresRefit` (independent of OBS's inverse updates):
    /// E‖e‖² + λ‖W'_K − W_K‖² + λ‖W_R‖².
    static func objective(weight: [Double], outputs: Int, kept: [Int], moments: ActivationMoments,
                          ridge: Double) throws -> Double {
        let n = moments.count
        let refit = try LeastSquaresRefit.refit(weight: weight, bias: [Double](repeating: 0, count: outputs),
                                                outputs: outputs, kept: kept, moments: moments, ridge: ridge)
        let lambda = LeastSquaresRefit.lambda(ridge: ridge, moments: moments)
        var penalty = 0.0
        for o in 0 ..< outputs {
            for (c, j) in kept.enumerated() {
                let change = refit.weight[o * kept.count + c] - weight[o * n + j]
                penalty += change * change
            }
            for j in 0 ..< n where !kept.contains(j) { penalty += weight[o * n + j] * weight[o * n + j] }
        }
        return refit.error.refit * refit.error.outputVariance + lambda * penalty
    }

    enum Grouping: String, CaseIterable { case columns, heads }

    static func groups(_ grouping: Grouping) -> [[Int]] {
        switch grouping {
        case .columns: return (0 ..< 7).map { [$0] }
        case .heads: return [[0, 1], [2, 3, 4], [5, 6]]
        }
    }

    @Test("each greedy step's cost == brute-force refit objective increase; k = 1 choice == brute-force best",
          arguments: Grouping.allCases, [0.0, 0.1])
    func greedyMatchesBruteForce(grouping: Grouping, ridge: Double) throws {
        var generator = SeededGenerator(seed: 0x0B5 ^ grouping.rawValue.hashStable ^ UInt64(ridge * 10))
        let rows = 41, n = 7, outputs = 4
        let x = CompensationTests.activations(rows: rows, cols: n, generator: &generator)
        let moments = ActivationMoments(rows: x, cols: n)
        let weight = CompensationTests.randomMatrix(outputs * n, generator: &generator)
        let groups = Self.groups(grouping)
        let steps = try StructuredOBS.greedy(weight: weight, outputs: outputs, groups: groups, moments: moments,
                                             ridge: ridge)
        #expect(steps.count == groups.count - 1)
        var removed: [Int] = []
        var previous = try Self.objective(weight: weight, outputs: outputs, kept: Array(0 ..< n), moments: moments,
                                          ridge: ridge)
        for step in steps {
            removed += groups[step.group]
            let kept = (0 ..< n).filter { !removed.contains($0) }
            let current = try Self.objective(weight: weight, outputs: outputs, kept: kept, moments: moments,
                                             ridge: ridge)
            #expect(abs(step.cost - (current - previous)) < 1e-9 * max(1, current),
                    "\(grouping) ridge \(ridge): step \(step.group) predicted \(step.cost), brute force \(current - previous)")
            previous = current
        }
        let single = try groups.indices.map { g in
            try Self.objective(weight: weight, outputs: outputs, kept: (0 ..< n).filter { !groups[g].contains($0) },
                               moments: moments, ridge: ridge)
        }
        let best = single.indices.min { single[$0] < single[$1] }!
        #expect(steps.first?.group == best, "\(grouping) ridge \(ridge): greedy \(steps.first?.group ?? -1), best \(best)")
    }

    @Test("scores follow the greedy order strictly, never-removed groups on top")
    func scoresFollowOrder() {
        let steps = [StructuredOBS.Step(group: 2, cost: 0.5), .init(group: 0, cost: 0.2), .init(group: 3, cost: 0.9)]
        let scores = StructuredOBS.scores(steps, groups: 5, scale: 2)
        #expect(scores[2] == 0.25 && scores[0] > scores[2] && scores[0] < 0.2500001 && scores[3] == 0.45)
        #expect(scores[1] > scores[3] && scores[4] > scores[3])
        #expect(Selection.topIndices(scores, count: 2) == [1, 4])
    }

    @Test("obs as a method: the budget's plan (MLP neurons and heads), the cut reported; --compensate refits it")
    func methodCutsAndCompensates() throws {
        var generator = SeededGenerator(seed: 0x0B5E)
        let config = MethodPlatformTests.config
        let weights = try randomWeights(config, generator: &generator)
        let context = PruningContext(original: weights, data: try MethodPlatformTests.data(), backend: CPUBackend(),
                                     budget: Budget(keepMLP: 0.5, keepHeads: 0.5), scope: .block, batchSize: 8,
                                     training: TrainingPhase(epochs: 0))
        let outcome = try OBSPruning().prune(context)
        let cut = try #require(outcome.cut)
        #expect(cut.plan.blocks.map(\.mlpHidden.count) == [6, 4])  // 11 → 6 (5.5 rounds up), 7 → 4 (3.5 up)
        #expect(cut.plan.blocks.map(\.heads.count) == [1, 2])      // 2 → 1, 3 → 2 (1.5 up)
        #expect(outcome.weights.config == (try cut.plan.prunedConfig(of: config)))
        // The parallel order: the update obs's costs assumed (the sequential default also refits the head).
        let (compensated, records) = try CompensationSettings(order: .parallel).apply(to: outcome, context: context,
                                                                                        method: "obs")
        #expect(compensated.weights.config == outcome.weights.config)
        #expect(records.map(\.layer) == ["blocks.0.attn.proj", "blocks.0.mlp.fc2", "blocks.1.attn.proj",
                                         "blocks.1.mlp.fc2"])
        for record in records { #expect(record.error.refit <= record.error.meanShift * (1 + 1e-12)) }
    }
}
