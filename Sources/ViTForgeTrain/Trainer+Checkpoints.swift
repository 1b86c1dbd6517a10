import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeModel

extension Trainer {
    // MARK: Checkpoints

    /// "; the last good checkpoint P is kept" when the run writes one.
    var lastGoodCheckpointNote: String {
        checkpoints.lastPath.map { "; the last good checkpoint \($0) is kept" } ?? ""
    }

    func writeLastCheckpoint() throws {
        if collective.isMain, let path = checkpoints.lastPath { try saveCheckpoint(to: path) }
    }

    /// The buffers a backward accumulates into: every optimizer slot's gradient, and the gradient of every channel
    /// mask of the model that is not a slot's (ViT-Slim's per-column gradients, which its term then sums onto its
    /// per-dim slots), in the same order on every rank. Each must hold only this step's backward, i.e. its owner
    /// zeroes it every step (as `ChannelMask` asks): the sum replaces it on every rank.
    func backwardGradients() -> [(buffer: Buffer, count: Int)] {
        var list = optimizer.slots.map { (buffer: $0.gradient, count: $0.elementCount) }
        var seen = Set(list.map { ObjectIdentifier($0.buffer) })
        let masks = (model.masks ?? []).flatMap { [$0.qkv, $0.mlpHidden] } + [model.residualMask]
        for case let gradient? in masks.map({ $0?.gradient }) where seen.insert(ObjectIdentifier(gradient)).inserted {
            list.append((gradient, gradient.count))
        }
        return list
    }

    /// Copies rank 0's trainable values (the model's parameters and every extra slot) to every rank before a run:
    /// the ranks start from the same file and seed, so this only guards against a rank that did not.
    func synchronizeParameters() throws {
        guard collective.size > 1 else { return }
        for slot in optimizer.slots {
            var values = try backend.read(slot.parameter, count: slot.elementCount)
            try values.withUnsafeMutableBufferPointer { try collective.broadcast($0, from: 0) }
            try backend.write(values, to: slot.parameter)
        }
    }

    /// Writes the resumable checkpoint (model, every optimizer slot, masks, hooks, position, generator, history).
    public func saveCheckpoint(to path: String) throws {
        _ = try readLoss()
        state.random = random.words
        var hookStates: [String: HookState] = [:]
        for hook in hooks {
            // The name is the first part of its tensors' keys (`hook.<name>.<key>`) and the key of its JSON.
            guard !hook.name.isEmpty, !hook.name.contains("."), hookStates[hook.name] == nil else {
                throw TrainingError.invalidState("hook name \"\(hook.name)\" is empty, has a dot or is used twice")
            }
            hookStates[hook.name] = try hook.checkpointState()
        }
        let gemm = (backend as? CPUBackend)?.gemmRecord
        try Checkpoint.write(model: model, optimizer: optimizer, hooks: hookStates,
                             metadata: Checkpoint.Metadata(settings: settings, state: state, gemm: gemm), to: path,
                             protecting: checkpoints.protectedInputs)
    }

    /// Restores model, optimizer slots, position, generator and hooks from a checkpoint written by a run with the
    /// same model configuration (or, when a hook changes shapes, a model it shrank), settings and data (seed and
    /// batches per epoch); `run()` then continues where it stopped. Extra slots and hooks must be added first.
    public func resume(from path: String) throws {
        let checkpoint = try Checkpoint.read(path: path)
        let saved = checkpoint.metadata
        if checkpoint.weights.config != model.config {
            let saved = checkpoint.weights.config, current = model.config
            guard hooks.contains(where: \.changesShape), saved.classes == current.classes,
                  saved.imageSize == current.imageSize, saved.inChannels == current.inChannels else {
                throw TrainingError.checkpoint(file: path, "written for another model configuration")
            }
            // A hook shrank the model before the checkpoint: continue on the checkpoint's shape.
            model = try VisionTransformer(weights: checkpoint.weights, backend: backend)
            try optimizer.attach(model)
        }
        if saved.settings != settings {
            throw TrainingError.checkpoint(file: path, "written with other hyper-parameters ("
                                           + Self.differences(saved.settings, settings) + ")")
        }
        guard saved.state.dataSeed == String(batches.dataSeed),
              saved.state.batchesPerEpoch == batches.batchesPerEpoch else {
            throw TrainingError.checkpoint(file: path, "written for other data: seed \(saved.state.dataSeed), "
                + "\(saved.state.batchesPerEpoch) batches per epoch; this run has seed \(batches.dataSeed), "
                + "\(batches.batchesPerEpoch)")
        }
        // A checkpoint without a GEMM record was written before the record existed, when every CPU product ran on
        // OpenBLAS (or on an OpenCL device, whose results a CPU resume does not reproduce anyway): continue on
        // OpenBLAS, so that such a resume stays exact now that oneDNN is the default.
        if let cpu = backend as? CPUBackend {
            try cpu.continueGemm(saved.gemm ?? GemmRecord(setting: GemmLibrary.openblas.rawValue), checkpoint: path)
        }
        guard let restoredRandom = TrainingRandom(words: saved.state.random) else {
            throw TrainingError.checkpoint(file: path, "generator state is not four UInt64 words")
        }
        guard saved.state.step >= 0, saved.state.epoch >= 0, saved.state.batchInEpoch >= 0,
              saved.state.batchInEpoch <= batches.batchesPerEpoch else {
            throw TrainingError.checkpoint(file: path, "position (step \(saved.state.step), epoch "
                                           + "\(saved.state.epoch), batch \(saved.state.batchInEpoch)) is invalid")
        }
        let savedSlots = Set(checkpoint.firstMoments.keys)
        let trainedSlots = Set(optimizer.slots.map(\.name))
        if let unknown = savedSlots.subtracting(trainedSlots).sorted().first {
            throw TrainingError.checkpoint(file: path, "has optimizer state for \(unknown), which this run does not "
                                           + "train (another method or options?)")
        }
        for slot in optimizer.slots {
            guard let firstMoment = checkpoint.firstMoments[slot.name],
                  let secondMoment = checkpoint.secondMoments[slot.name] else {
                throw TrainingError.checkpoint(file: path, "missing optimizer state for \(slot.name)")
            }
            if slot.isModelParameter {
                guard let values = checkpoint.weights[slot.name]?.values else {
                    throw TrainingError.checkpoint(file: path, "missing \(slot.name)")
                }
                try model.setParameter(slot.name, values)
            } else {
                guard let values = checkpoint.slotValues[slot.name], values.count == slot.elementCount else {
                    throw TrainingError.checkpoint(file: path, "missing or mis-sized values of slot \(slot.name)")
                }
                try backend.write(values, to: slot.parameter)
            }
            try optimizer.restore(slot.name, firstMoment: firstMoment, secondMoment: secondMoment)
            try optimizer.setMask(slot.name, checkpoint.masks[slot.name])
        }
        optimizer.stepCount = saved.state.step
        random = restoredRandom
        state = saved.state
        try accumulators.restart(epochSum: state.epochDeviceLossSum ?? 0)
        windowHostSum = 0
        windowSteps = 0
        lastReadStep = state.step
        for hook in hooks {
            guard let hookState = checkpoint.hooks[hook.name] else {
                throw TrainingError.checkpoint(file: path, "has no state for hook \(hook.name)")
            }
            try hook.restore(hookState, trainer: self)
        }
    }
}
