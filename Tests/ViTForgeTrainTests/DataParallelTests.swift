import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport
@testable import ViTForgeTrain

/// The data-parallel training step without MPI: threads stand in for the ranks (`ThreadRanks`). Each rank fills
/// its share of every batch, the gradients are summed, and the terms, clipping and AdamW run on every rank; the
/// result must be one process's training on the whole batches, up to summation order — through distillation, label
/// smoothing, clipping, a partial last batch and (with 4 ranks) a rank whose share of that batch is empty.
@Suite(.serialized)
struct DataParallelTests {
    /// The tiny irregular ViT without a qkv bias: the key bias's gradient is zero in exact arithmetic (softmax ignores
    /// a constant added to a row of scores), i.e. rounding noise, which AdamW's normalised update turns into steps
    /// of full size, so its values depend on the summation order and cannot match one process's to 1e-5.
    static let config: ViTConfig = {
        var config = tinyConfig()
        config.qkvBias = false
        return config
    }()

    static func trainer(_ collective: any Collective, checkpoints: CheckpointPolicy = CheckpointPolicy()) throws
        -> Trainer {
        // A backend per rank: the ranks run at the same time.
        let backend = CPUBackend()
        let model = try VisionTransformer(weights: randomWeights(config, seed: 3), backend: backend)
        let teacher = try VisionTransformer(weights: randomWeights(config, seed: 99), backend: backend)
        let trainer = try Trainer(model: model, batches: SyntheticBatches(config: config),
                                  settings: ResumeTests.settings, teacher: teacher, seed: 5, checkpoints: checkpoints,
                                  collective: collective)
        trainer.stopsOnInterrupt = false
        trainer.evaluate = ResumeTests.validation
        return trainer
    }

    static func weights(_ trainer: Trainer) throws -> [String: [Float]] {
        try trainer.model.hostWeights().namedTensors().reduce(into: [:]) { result, tensor in
            if case let .float32(values) = tensor.values { result[tensor.name] = values }
        }
    }

    struct Run: Sendable {
        var weights: [String: [Float]]
        var losses: [Double]
        var stopped: Bool
        var step: Int
        /// Gradient all-reduces done (one per step in a parallel run).
        var exchanges: Int
    }

    static func run(_ collective: any Collective, checkpoints: CheckpointPolicy = CheckpointPolicy(),
                    resume: Bool = false, stopAt: Int? = nil) throws -> Run {
        let trainer = try trainer(collective, checkpoints: checkpoints)
        if resume, let path = checkpoints.lastPath { try trainer.resume(from: path) }
        if let stopAt {
            trainer.onProgress = { [unowned trainer] in if $0.step == stopAt { trainer.requestStop() } }
        }
        let outcome = try trainer.run()
        return Run(weights: try weights(trainer), losses: outcome.history.epochs.map(\.trainLoss),
                   stopped: outcome.stopped, step: trainer.state.step, exchanges: trainer.gradientExchange.calls)
    }

    @Test("N thread ranks train to one process's weights (1e-5 relative) and agree bit for bit among themselves",
          arguments: [2, 3, 4])
    func matchesOneProcess(ranks: Int) throws {
        let single = try Self.run(SingleProcess())
        let parallel = try ThreadRanks(size: ranks).run { try Self.run($0) }
        for (name, reference) in single.weights {
            let mine = try #require(parallel[0].weights[name])
            #expect(relativeError(mine, reference) < 1e-5, "\(name) with \(ranks) ranks")
            for other in parallel.dropFirst() { #expect(other.weights[name] == mine, "\(name) differs between ranks") }
        }
        for (loss, reference) in zip(parallel[0].losses, single.losses) {
            #expect(abs(loss - reference) <= 1e-6 * abs(reference), "epoch loss \(loss) vs \(reference)")
        }
        #expect(parallel[0].losses.count == single.losses.count)
        #expect(single.exchanges == 0)
        #expect(parallel.allSatisfy { $0.exchanges == single.step }, "one gradient exchange per step on every rank")
    }

    /// A learned multiplier per qkv column whose backward gradient lands in a buffer of its own, which a term then
    /// moves onto the optimizer slot: ViT-Slim's pattern (per-column gradients summed onto per-dim values).
    final class ColumnMasks: TrainingTerm {
        let name = "columns"
        let values: [Buffer], slotGradients: [Buffer], columnGradients: [Buffer]
        let backend: Backend

        init(_ trainer: Trainer) throws {
            let backend = trainer.model.backend
            self.backend = backend
            let rows = trainer.model.config.blocks.map(\.qkvRows)
            values = try rows.map { try backend.makeBuffer([Float](repeating: 1, count: $0)) }
            slotGradients = try rows.map { try backend.zeros($0) }
            columnGradients = try rows.map { try backend.zeros($0) }
            for (b, count) in rows.enumerated() {
                try trainer.optimizer.addSlot(name: "columns.\(b)", shape: [count], parameter: values[b],
                                              gradient: slotGradients[b], learningRateScale: 3)
            }
            try trainer.model.setMasks(rows.indices.map {
                BlockMasks(qkv: ChannelMask(values: values[$0], gradient: columnGradients[$0]))
            })
        }

        func addGradient(_ trainer: Trainer) throws -> Double {
            for (column, slot) in zip(columnGradients, slotGradients) {
                try backend.axpy(alpha: 1, x: column, y: slot, count: column.count)
                try backend.fill(column, value: 0, offset: 0, count: column.count)
            }
            return 0
        }
    }

    static func runWithColumnMasks(_ collective: any Collective) throws -> [String: [Float]] {
        let trainer = try trainer(collective)
        let masks = try ColumnMasks(trainer)
        trainer.terms = [masks]
        _ = try trainer.run()
        var result = try weights(trainer)
        for (b, values) in masks.values.enumerated() { result["columns.\(b)"] = try trainer.model.backend.read(values) }
        return result
    }

    @Test("gradients of channel masks outside the optimizer's slots (ViT-Slim's columns) are summed too")
    func maskGradientsOutsideSlots() throws {
        let single = try Self.runWithColumnMasks(SingleProcess())
        let parallel = try ThreadRanks(size: 2).run { try Self.runWithColumnMasks($0) }
        for (name, reference) in single {
            #expect(relativeError(try #require(parallel[0][name]), reference) < 1e-5, "\(name)")
            #expect(parallel[1][name] == parallel[0][name], "\(name) differs between ranks")
        }
        #expect(single["columns.0"]?.contains { $0 != 1 } == true, "the masks did not learn")
    }

    @Test("a stop seen by one rank stops every rank at that step; resumed, the ranks end as the uninterrupted run")
    func stopAndResume() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let ranks = ThreadRanks(size: 2)
        let uninterrupted = try ranks.run { try Self.run($0) }
        let policy = CheckpointPolicy(lastPath: folder.path("run.checkpoint.safetensors"), everySteps: 3)
        let stopped = try ranks.run { collective in
            // Only rank 1 asks to stop.
            try Self.run(collective, checkpoints: policy, stopAt: collective.rank == 1 ? 5 : nil)
        }
        #expect(stopped.allSatisfy { $0.stopped && $0.step == 5 })
        let resumed = try ranks.run { try Self.run($0, checkpoints: policy, resume: true) }
        for rank in 0..<2 {
            #expect(resumed[rank].weights == uninterrupted[rank].weights, "rank \(rank)")
            #expect(resumed[rank].losses == uninterrupted[rank].losses, "rank \(rank)")
        }
    }
}
