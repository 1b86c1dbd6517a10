import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

extension Trainer {
    // MARK: Reading the loss

    /// Reads the device's loss sums (one small download): throws, naming the first bad step and the parameter
    /// check, when a loss since the last read was not finite; else brings `state.epochDeviceLossSum` up to date.
    func readLoss() throws -> [LossAccumulators.Slot: Double] {
        let values = try accumulators.read()
        if let badStep = values[.badStep], badStep != 0 {
            throw try divergence(loss: values[.badValue] ?? .nan, step: Int(badStep), noticedAfter: state.step)
        }
        state.epochDeviceLossSum = values[.epoch]
        lastReadStep = state.step
        lastReadTime = DispatchTime.now().uptimeNanoseconds
        return values
    }

    /// The mean loss of the steps since the last call (nil when there were none), for a progress report.
    func takeWindowMean() throws -> Double? {
        let values = try readLoss()
        let steps = windowSteps
        let sum = (values[.window] ?? 0) + windowHostSum
        try accumulators.clearWindow()
        windowHostSum = 0
        windowSteps = 0
        return steps > 0 ? sum / Double(steps) : nil
    }

    /// The error for a loss that is not finite at `step` (1-based), found after step `noticedAfter`: names the
    /// first parameter that went bad (only this failure path reads the weights back). Updates after `step` were
    /// skipped on the device, so the weights are those `step` started from.
    func divergence(loss value: Double, step: Int, noticedAfter: Int) throws -> TrainingError {
        let culprit = try NonFiniteCheck.firstNonFinite(model.hostWeights().namedTensors())
        let source = culprit.map { "parameter \($0.name) holds \($0.value)" } ?? "the weights are finite"
        let perEpoch = batches.batchesPerEpoch
        var position = "at step \(step) (epoch \((step - 1) / perEpoch + 1), batch \((step - 1) % perEpoch + 1))"
        if noticedAfter > step {
            position += ", the first non-finite one of steps \(lastReadStep + 1)–\(noticedAfter) read back after step "
                + "\(noticedAfter) (no update since)"
        }
        return TrainingError.nonFinite("loss is \(value) \(position); \(source): training diverged"
                                       + lastGoodCheckpointNote + "; lower the learning rate")
    }

    func finishEpoch() throws {
        let epochNumber = state.epoch + 1
        _ = try readLoss()
        let lossSum = state.epochLossSum + (state.epochDeviceLossSum ?? 0)
        let validation = try evaluate?(model, epochNumber)
        let record = EpochRecord(
            epoch: epochNumber, step: state.step,
            trainLoss: state.epochImages > 0 ? lossSum / Double(state.epochImages) : 0,
            learningRate: schedule.learningRate(step: max(state.step - 1, 0)), seconds: state.epochSeconds,
            imagesPerSecond: state.epochSeconds > 0 ? Double(state.epochImages) / state.epochSeconds : 0,
            validation: validation,
            terms: state.epochTermSums.map { sums in sums.mapValues { $0 / Double(max(state.epochImages, 1)) } })
        state.history.epochs.append(record)
        if let metric = validation?.metric, metric > (state.history.bestMetric ?? -.infinity) {
            state.history.bestMetric = metric
            state.history.bestEpoch = epochNumber
            if collective.isMain, let bestPath = checkpoints.bestPath {
                try SafetensorsWriter.write(model.hostWeights().namedTensors(), metadata: [
                    ViTConfig.metadataKey: model.config.jsonString(), "vitforge.epoch": String(epochNumber),
                    "vitforge.metric": String(metric),
                ], to: bestPath, protecting: checkpoints.protectedInputs)
            }
        }
        state.epoch += 1
        state.batchInEpoch = 0
        state.epochLossSum = 0
        state.epochDeviceLossSum = nil
        try accumulators.clearEpoch()
        state.epochTermSums = nil
        state.epochImages = 0
        state.epochSeconds = 0
        if state.epoch < settings.epochs { try writeLastCheckpoint() }
    }
}
