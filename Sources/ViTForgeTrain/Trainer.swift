import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

/// Where training images come from. The data layer adapts its readers to this; the trainer never sees files.
///
/// Batch `index` of `epoch` must be a pure function of (`dataSeed`, `epoch`, `index`) — shuffling and augmentation
/// included — so that a resumed run can seek straight to the batch it stopped at and see the same pixels.
public protocol TrainingBatches: AnyObject {
    /// Batches in every epoch (the last may be partial).
    var batchesPerEpoch: Int { get }
    /// The most images one batch holds.
    var maximumBatch: Int { get }
    /// Floats per image, `channels · imageSize · imageSize` of the model.
    var imageElements: Int { get }
    /// The seed of the data order and augmentation, recorded in checkpoints.
    var dataSeed: UInt64 { get }
    /// Writes batch `index` (0 ..< batchesPerEpoch) of `epoch` (0-based): normalised images [n, C, H, W] into the
    /// front of `images` and their class indices into `labels`; returns n (1 ... maximumBatch). The buffers hold
    /// `maximumBatch` images and are reused for every batch, so nothing is allocated per step.
    func fill(epoch: Int, index: Int, images: UnsafeMutableBufferPointer<Float>,
              labels: UnsafeMutableBufferPointer<Int32>) throws -> Int
    /// Writes only share `part` of `parts` (`BatchShards.range`) of that batch into the front of the buffers: one
    /// rank's images of a data-parallel step. Returns the share's image count (may be 0) and the whole batch's.
    /// The default fills the whole batch and moves the share to the front; a source that can decode only the share
    /// should.
    func fill(epoch: Int, index: Int, part: Int, of parts: Int, images: UnsafeMutableBufferPointer<Float>,
              labels: UnsafeMutableBufferPointer<Int32>) throws -> (shard: Int, batch: Int)
}

extension TrainingBatches {
    public func fill(epoch: Int, index: Int, part: Int, of parts: Int, images: UnsafeMutableBufferPointer<Float>,
                     labels: UnsafeMutableBufferPointer<Int32>) throws -> (shard: Int, batch: Int) {
        let count = try fill(epoch: epoch, index: index, images: images, labels: labels)
        let share = BatchShards.range(of: count, part: part, parts: parts)
        if share.lowerBound > 0, let imageBase = images.baseAddress, let labelBase = labels.baseAddress {
            // The share moves down within the same buffer: memmove, the regions may overlap.
            memmove(imageBase, imageBase + share.lowerBound * imageElements,
                    share.count * imageElements * MemoryLayout<Float>.stride)
            memmove(labelBase, labelBase + share.lowerBound, share.count * MemoryLayout<Int32>.stride)
        }
        return (share.count, count)
    }
}

/// The hyper-parameters of a run; a checkpoint only resumes under the same settings.
public struct TrainingSettings: Codable, Equatable, Sendable {
    public var epochs: Int
    /// Peak learning rate (after warm-up).
    public var learningRate: Double
    /// The cosine's floor.
    public var minimumLearningRate: Double
    /// Share of all steps spent warming up (rounded down to whole steps).
    public var warmupFraction: Double
    public var optimizer: AdamWSettings
    public var labelSmoothing: Double
    /// Global L2 gradient-norm limit; nil does not clip.
    public var gradientClipNorm: Double?
    /// Knowledge distillation from the teacher given to the trainer; nil trains on labels only.
    public var distillation: DistillationSettings?

    /// The fixture recipe (`training` in fm-vit-c.json): AdamW lr 1e-3, wd 0.05, 5% warm-up then cosine to 0.
    public init(epochs: Int, learningRate: Double = 1e-3, minimumLearningRate: Double = 0,
                warmupFraction: Double = 0.05, optimizer: AdamWSettings = AdamWSettings(), labelSmoothing: Double = 0,
                gradientClipNorm: Double? = nil, distillation: DistillationSettings? = nil) {
        self.epochs = epochs
        self.learningRate = learningRate
        self.minimumLearningRate = minimumLearningRate
        self.warmupFraction = warmupFraction
        self.optimizer = optimizer
        self.labelSmoothing = labelSmoothing
        self.gradientClipNorm = gradientClipNorm
        self.distillation = distillation
    }

    /// Why these settings cannot train, or nil.
    public func problem() -> String? {
        if epochs < 1 { return "epochs \(epochs) must be at least 1" }
        if !(learningRate > 0) || !learningRate.isFinite { return "learning rate \(learningRate) must be positive" }
        if !(minimumLearningRate >= 0) || minimumLearningRate > learningRate {
            return "minimum learning rate \(minimumLearningRate) must lie in [0, \(learningRate)]"
        }
        if !(0...1).contains(warmupFraction) { return "warm-up fraction \(warmupFraction) must lie in [0, 1]" }
        let o = optimizer
        if !(0..<1).contains(o.beta1) || !(0..<1).contains(o.beta2) { return "AdamW betas must lie in [0, 1)" }
        if !(o.eps > 0) || !(o.weightDecay >= 0) { return "AdamW eps must be positive and weight decay ≥ 0" }
        if let clip = gradientClipNorm, !(clip > 0) { return "gradient clip norm \(clip) must be positive" }
        return nil
    }
}

/// The caller's per-epoch evaluation.
public struct Evaluation: Codable, Equatable, Sendable {
    /// Higher is better; chooses the best checkpoint. Nil when the run has no validation data: test numbers are
    /// reported, never used to choose.
    public var metric: Double?
    /// Validation accuracy.
    public var accuracy: Double?
    public var loss: Double?
    /// Test accuracy, for the log only.
    public var testAccuracy: Double?

    public init(metric: Double?, accuracy: Double? = nil, loss: Double? = nil, testAccuracy: Double? = nil) {
        self.metric = metric
        self.accuracy = accuracy
        self.loss = loss
        self.testAccuracy = testAccuracy
    }
}

/// One finished epoch, for the JSON log.
public struct EpochRecord: Codable, Equatable, Sendable {
    /// 1-based, as printed.
    public var epoch: Int
    /// Optimizer steps completed at the end of the epoch.
    public var step: Int
    /// Mean training loss over the epoch's images.
    public var trainLoss: Double
    /// Learning rate of the epoch's last step.
    public var learningRate: Double
    public var seconds: Double
    public var imagesPerSecond: Double
    public var validation: Evaluation?
    /// Mean value of each `TrainingTerm` over the epoch's images (nil without terms): a method's search curve.
    public var terms: [String: Double]?
}

public struct TrainingHistory: Codable, Equatable, Sendable {
    public var epochs: [EpochRecord] = []
    /// The epoch (1-based) whose weights the best checkpoint holds, and its metric.
    public var bestEpoch: Int?
    public var bestMetric: Double?

    public init() {}
}

/// Which checkpoints a run writes.
public struct CheckpointPolicy: Sendable {
    /// The resumable checkpoint (model + optimizer + state): every `everySteps` steps, at every epoch's end, when a
    /// stop is requested, and at the end of the run.
    public var lastPath: String?
    /// The model (plain weights file, loadable by every command) after the epoch with the best validation metric.
    public var bestPath: String?
    /// 0 writes `lastPath` only at epoch ends, on stop and at the end.
    public var everySteps: Int
    /// Files the checkpoints must never overwrite (the run's input model).
    public var protectedInputs: [String]

    public init(lastPath: String? = nil, bestPath: String? = nil, everySteps: Int = 0,
                protectedInputs: [String] = []) {
        self.lastPath = lastPath
        self.bestPath = bestPath
        self.everySteps = everySteps
        self.protectedInputs = protectedInputs
    }
}

/// How `run()` ended.
public struct TrainingOutcome: Sendable {
    public var history: TrainingHistory
    /// True when a stop request (Ctrl-C) ended the run early; the last checkpoint then holds the position.
    public var stopped: Bool
}

/// The training loop. Per step: zero every optimizer slot's gradient, forward/backward of `TrainingLoss`
/// (cross-entropy, optionally with distillation), each `TrainingTerm`'s gradient added, each `TrainingHook`'s look at
/// the gradients (`afterBackward`), optional gradient clipping, AdamW at the schedule's learning rate, then each
/// `TrainingHook`'s `afterStep` (which may shrink the model: `replaceModel`).
/// Between steps it writes checkpoints (hooks' state included) and honours stop requests; after each epoch it
/// evaluates, records history and keeps the best model. A method opens the step through `terms`, `hooks` and
/// `optimizer.addSlot`, never by editing this loop.
///
/// Every buffer a step uses (device images/labels, host staging, loss buffers, moments) is allocated here, once.
/// A run resumed from a checkpoint continues with bit-identical weights on a deterministic backend: the schedule is a
/// function of the step, batches a function of (seed, epoch, index), and everything else is in the checkpoint.
public final class Trainer {
    /// The model being trained; a hook may replace it with a smaller one (`replaceModel`).
    public private(set) var model: VisionTransformer
    public let batches: TrainingBatches
    public let settings: TrainingSettings
    public let optimizer: AdamW
    public let loss: TrainingLoss
    public let schedule: LearningRateSchedule
    public var checkpoints: CheckpointPolicy
    /// The run's generator, checkpointed (see `TrainingRandom`).
    public var random: TrainingRandom
    public internal(set) var state = TrainingState()
    /// Loss terms beside CE/KD, applied in order every step.
    public var terms: [any TrainingTerm] = []
    /// Run after every optimizer step, in order; their state is checkpointed under their names.
    public var hooks: [any TrainingHook] = []

    /// Called after every step (on the training thread).
    public var onProgress: ((TrainingProgress) -> Void)?
    /// Which progress reports carry the loss: reading it waits for the device, so steps in between report nil and
    /// the step runs without a host round trip. `ProgressPrinter.lossCadence` matches what the printer shows.
    public var progressLoss = ProgressLossCadence()
    /// Whether the process-wide Ctrl-C flag (`StopSignal`) stops this run; a trainer embedded where another owns
    /// Ctrl-C (or a test beside one that raises the flag) turns it off and uses `requestStop()`.
    public var stopsOnInterrupt = true
    /// Called after every epoch with the model and the 1-based epoch; its metric picks the best checkpoint.
    public var evaluate: ((VisionTransformer, Int) throws -> Evaluation)?
    /// The ranks of a data-parallel run (`Collectives.world` unless given): each fills its share of every batch,
    /// and the gradients are summed before the terms, hooks, clipping and AdamW, which then run identically on every
    /// rank. Only rank 0 writes checkpoints and the best model.
    public let collective: any Collective
    /// Sums the gradients over the ranks (its timing: the all-reduce cost per step).
    public let gradientExchange: GradientExchange

    private let backend: Backend
    /// The most images of one rank's share of a batch (`maximumBatch` in one process).
    private let maximumShard: Int
    private let deviceImages: Buffer   // [maximumShard, C, H, W]
    private let deviceLabels: Buffer   // [maximumShard] Int32
    /// Two host staging areas each for images [maximumBatch, C, H, W] and labels [maximumBatch], used in turn: the
    /// batch is written into one while the device may still read the other's upload (`Backend.makeStaging`).
    private let stagedImages: [StagingBuffer]
    private let stagedLabels: [StagingBuffer]
    private var stagingTurn = 0
    /// The loss of the steps, kept on the device until read (`readLoss`).
    private let accumulators: LossAccumulators
    /// What the host adds to the device's sums: the terms' values and, in a data-parallel run, the whole loss
    /// (summed over the ranks through the host): over the progress window, and the last step's.
    private var windowHostSum = 0.0
    private var windowSteps = 0
    private var lastHostValue = LossValue(total: 0, crossEntropy: 0, distillation: nil)
    /// The step after which the device's sums were last read, and when.
    private var lastReadStep = 0
    private var lastReadTime: UInt64 = 0
    private var stopRequested = false
    // This process's segment of the run, for images/s and ETA.
    private var segmentStart: UInt64 = 0
    private var segmentSteps = 0
    private var segmentImages = 0

    public var totalSteps: Int { settings.epochs * batches.batchesPerEpoch }

    public init(model: VisionTransformer, batches: TrainingBatches, settings: TrainingSettings,
                teacher: VisionTransformer? = nil, seed: UInt64 = 0,
                checkpoints: CheckpointPolicy = CheckpointPolicy(),
                collective: any Collective = Collectives.world) throws {
        if let problem = settings.problem() { throw TrainingError.invalidSettings(problem) }
        let config = model.config
        let imageElements = config.inChannels * config.imageSize * config.imageSize
        guard batches.imageElements == imageElements else {
            throw TrainingError.batches("images of \(batches.imageElements) floats, the model takes \(imageElements) "
                                        + "(\(config.inChannels)×\(config.imageSize)×\(config.imageSize))")
        }
        guard batches.batchesPerEpoch >= 1, batches.maximumBatch >= 1 else {
            throw TrainingError.batches("\(batches.batchesPerEpoch) batches of at most \(batches.maximumBatch) images")
        }
        if settings.distillation != nil && teacher == nil {
            throw TrainingError.invalidSettings("distillation settings given without a teacher model")
        }
        self.model = model
        self.batches = batches
        self.settings = settings
        self.checkpoints = checkpoints
        backend = model.backend
        self.collective = collective
        gradientExchange = GradientExchange(collective: collective)
        maximumShard = (batches.maximumBatch + collective.size - 1) / collective.size
        random = TrainingRandom(seed: seed)
        optimizer = try AdamW(model: model, settings: settings.optimizer)
        loss = try TrainingLoss(backend: backend, classes: config.classes, maximumBatch: maximumShard,
                                smoothing: settings.labelSmoothing, teacher: teacher,
                                distillation: settings.distillation)
        let totalSteps = settings.epochs * batches.batchesPerEpoch
        schedule = LearningRateSchedule(peak: settings.learningRate, warmupFraction: settings.warmupFraction,
                                        totalSteps: totalSteps, floor: settings.minimumLearningRate)
        deviceImages = try backend.allocate(maximumShard * imageElements)
        deviceLabels = try backend.allocate(maximumShard)
        let device = model.backend
        stagedImages = try (0 ..< 2).map { _ in try device.makeStaging(batches.maximumBatch * imageElements) }
        stagedLabels = try (0 ..< 2).map { _ in try device.makeStaging(batches.maximumBatch) }
        accumulators = try LossAccumulators(backend: device)
        state.dataSeed = String(batches.dataSeed)
        state.batchesPerEpoch = batches.batchesPerEpoch
    }

    /// Asks the loop to checkpoint and return before its next step (from the training thread, e.g. a progress
    /// callback; a signal handler uses `StopSignal`).
    public func requestStop() { stopRequested = true }

    // MARK: Loop

    /// Trains until the last epoch is done or a stop is requested; from where `resume` left the state, if called.
    public func run() throws -> TrainingOutcome {
        stopRequested = false
        segmentStart = DispatchTime.now().uptimeNanoseconds
        segmentSteps = 0
        segmentImages = 0
        lastReadTime = segmentStart
        try synchronizeParameters()
        while state.epoch < settings.epochs {
            // Every rank stops at the same step, whichever saw the request.
            if try collective.any(stopRequested || (stopsOnInterrupt && StopSignal.isRequested)) {
                _ = try readLoss()
                try writeLastCheckpoint()
                return TrainingOutcome(history: state.history, stopped: true)
            }
            if state.batchInEpoch >= batches.batchesPerEpoch {
                do {
                    try finishEpoch()
                } catch is PassInterrupted {
                    // Ctrl-C in the epoch's evaluation: the checkpoint holds the finished epoch, so --resume
                    // evaluates it again and goes on.
                    try writeLastCheckpoint()
                    return TrainingOutcome(history: state.history, stopped: true)
                }
                continue
            }
            try step()
            if checkpoints.everySteps > 0 && state.step % checkpoints.everySteps == 0 {
                try writeLastCheckpoint()
            }
        }
        _ = try readLoss()
        try writeLastCheckpoint()
        return TrainingOutcome(history: state.history, stopped: false)
    }

    /// One optimizer step on the next batch; advances the position. `run()` calls this; tests and benchmarks may too.
    /// In one process it waits for nothing on the device: the batch is uploaded without waiting, the loss is added up
    /// on the device (`lastStepLoss()` reads it), clipping's norm stays there too; the only wait is for the upload
    /// of two steps ago from the staging area it reuses, which keeps the host at most two steps ahead. Terms
    /// return host values (they may read), and a data-parallel step sums the loss and gradients through the host.
    public func step() throws {
        guard state.epoch < settings.epochs, state.batchInEpoch < batches.batchesPerEpoch else {
            throw TrainingError.invalidState("step past the end of the run or of epoch \(state.epoch + 1)")
        }
        let started = DispatchTime.now().uptimeNanoseconds
        FaultInjection.beginTrainingStep(state.step + 1)
        let (epoch, index) = (state.epoch, state.batchInEpoch)
        let imageElements = batches.imageElements
        let maximumBatch = batches.maximumBatch
        let parallel = collective.size > 1
        let images = stagedImages[stagingTurn], labels = stagedLabels[stagingTurn]
        stagingTurn = 1 - stagingTurn
        try images.waitForUpload()
        try labels.waitForUpload()
        // `shard` images of this rank's share of a batch of `count` (the same numbers in one process).
        let (shard, count): (Int, Int)
        if parallel {
            (shard, count) = try batches.fill(epoch: epoch, index: index, part: collective.rank, of: collective.size,
                                              images: images.floats, labels: labels.int32s)
        } else {
            let n = try batches.fill(epoch: epoch, index: index, images: images.floats, labels: labels.int32s)
            (shard, count) = (n, n)
        }
        guard count >= 1, count <= maximumBatch, shard <= maximumShard,
              shard == BatchShards.range(of: count, part: collective.rank, parts: collective.size).count else {
            throw TrainingError.batches("batch \(index) of epoch \(epoch + 1) has \(count) images, this rank's "
                                        + "share \(shard) (1 ... \(maximumBatch) expected)")
        }
        // Labels are checked here, on the host, where the batch is made: on the device an out-of-range label only
        // makes its loss NaN (`Backend`'s contract), which would read as divergence instead of as bad data.
        let classes = model.config.classes
        if let bad = labels.int32s[0 ..< shard].firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw TrainingError.batches("batch \(index) of epoch \(epoch + 1): label \(labels.int32s[bad]) of image "
                                        + "\(bad) is not a class index (\(classes) classes)")
        }
        if shard > 0 {
            try backend.uploadAsync(images, count: shard * imageElements, to: deviceImages, offset: 0)
            try backend.uploadAsync(labels, count: shard, to: deviceLabels, offset: 0)
        }

        try optimizer.zeroGradients()
        let stepNumber = state.step + 1
        // What the host knows of this step's loss: nothing in one process (the device adds it up), the reduced
        // loss in a data-parallel run; the terms' values in both.
        var hostValue = LossValue(total: 0, crossEntropy: 0, distillation: loss.distillation.map { _ in 0 })
        if parallel {
            // A rank's share divides by the whole batch, so the ranks' gradients and losses sum to the batch mean.
            if shard > 0 {
                hostValue = try loss.evaluate(student: model, images: deviceImages, labels: deviceLabels, batch: shard,
                                              meanOver: count, backward: true)
            }
            // Every gradient the backward wrote is summed before the terms and hooks, so they see the whole batch's
            // gradient and add theirs once, identically on every rank.
            try gradientExchange.allReduceSum(backwardGradients(), backend: backend)
            let sums = try collective.sum([hostValue.total, hostValue.crossEntropy, hostValue.distillation ?? 0])
            hostValue.total = sums[0]
            hostValue.crossEntropy = sums[1]
            if hostValue.distillation != nil { hostValue.distillation = sums[2] }
        } else {
            try loss.accumulate(student: model, images: deviceImages, labels: deviceLabels, batch: shard,
                                backward: true, into: accumulators, step: stepNumber)
        }
        for term in terms {
            let termValue = try term.addGradient(self)
            hostValue.terms[term.name] = termValue
            hostValue.total += termValue
        }
        for hook in hooks { try hook.afterBackward(self) }
        // The host's part is checked at once; the device's at the next read (`readLoss`), AdamW skipping every
        // update from the first bad step on meanwhile.
        guard hostValue.total.isFinite else {
            throw try divergence(loss: hostValue.total, step: stepNumber, noticedAfter: stepNumber)
        }
        if let maxNorm = settings.gradientClipNorm {
            try accumulators.clip(optimizer.descendingGradients, maxNorm: maxNorm)
        }
        let learningRate = schedule.learningRate(step: state.step)
        try optimizer.step(learningRate: learningRate, skipWhen: accumulators.nonFiniteFlag)

        state.step += 1
        state.batchInEpoch += 1
        state.epochLossSum += hostValue.total * Double(count)
        if !hostValue.terms.isEmpty {
            var sums = state.epochTermSums ?? [:]
            for (name, termValue) in hostValue.terms { sums[name, default: 0] += termValue * Double(count) }
            state.epochTermSums = sums
        }
        state.epochImages += count
        windowHostSum += hostValue.total
        windowSteps += 1
        lastHostValue = hostValue
        for hook in hooks { try hook.afterStep(self) }
        let now = DispatchTime.now().uptimeNanoseconds
        state.epochSeconds += Double(now - started) / 1e9
        segmentSteps += 1
        segmentImages += count
        if let onProgress {
            let elapsed = Double(now - segmentStart) / 1e9
            let secondsPerStep = elapsed / Double(segmentSteps)
            let reads = progressLoss.reads(step: state.step,
                                           epochDone: state.batchInEpoch == batches.batchesPerEpoch,
                                           secondsSinceRead: Double(now - lastReadTime) / 1e9)
            let meanLoss = reads ? try takeWindowMean() : nil
            onProgress(TrainingProgress(
                step: state.step, totalSteps: totalSteps, epoch: epoch + 1, epochs: settings.epochs,
                batchInEpoch: state.batchInEpoch, batchesPerEpoch: batches.batchesPerEpoch, loss: meanLoss,
                learningRate: learningRate, imagesPerSecond: elapsed > 0 ? Double(segmentImages) / elapsed : 0,
                etaSeconds: secondsPerStep * Double(totalSteps - state.step)))
        }
    }

    /// The last step's loss and its parts. Reads the device (waits for it) and, like every read, throws when a
    /// step's loss since the last read was not finite.
    public func lastStepLoss() throws -> LossValue {
        let values = try readLoss()
        guard collective.size == 1 else { return lastHostValue }
        var value = lastHostValue
        value.total += values[.lastTotal] ?? 0
        value.crossEntropy = values[.lastCrossEntropy] ?? 0
        if loss.distillation != nil { value.distillation = values[.lastDistillation] }
        return value
    }

    // MARK: Reading the loss

    /// Reads the device's loss sums (one small download): throws, naming the first bad step and the parameter
    /// check, when a loss since the last read was not finite; else brings `state.epochDeviceLossSum` up to date.
    private func readLoss() throws -> [LossAccumulators.Slot: Double] {
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
    private func takeWindowMean() throws -> Double? {
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
    private func divergence(loss value: Double, step: Int, noticedAfter: Int) throws -> TrainingError {
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

    private func finishEpoch() throws {
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

    // MARK: Checkpoints

    /// "; the last good checkpoint P is kept" when the run writes one.
    private var lastGoodCheckpointNote: String {
        checkpoints.lastPath.map { "; the last good checkpoint \($0) is kept" } ?? ""
    }

    private func writeLastCheckpoint() throws {
        if collective.isMain, let path = checkpoints.lastPath { try saveCheckpoint(to: path) }
    }

    /// The buffers a backward accumulates into: every optimizer slot's gradient, and the gradient of every channel
    /// mask of the model that is not a slot's (ViT-Slim's per-column gradients, which its term then sums onto its
    /// per-dim slots), in the same order on every rank. Each must hold only this step's backward, i.e. its owner
    /// zeroes it every step (as `ChannelMask` asks): the sum replaces it on every rank.
    private func backwardGradients() -> [(buffer: Buffer, count: Int)] {
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
    private func synchronizeParameters() throws {
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
        try Checkpoint.write(model: model, optimizer: optimizer, hooks: hookStates,
                             metadata: Checkpoint.Metadata(settings: settings, state: state), to: path,
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

    // MARK: Shape changes

    /// Continues training on `weights`, a physically smaller copy of the current model (a hook pruning mid-run):
    /// element `i` of parameter `name` in `weights` was element `elementSources[name][i]` of the current model, and
    /// the optimizer's moments and masks are sliced the same way, so training continues as if the smaller model had
    /// been trained from the start with exactly these weights and moments. Parameters not in `elementSources` must
    /// keep their shape. Call between steps (from a hook).
    public func replaceModel(with weights: ViTWeights, elementSources: [String: [Int]]) throws {
        let new = weights.config, current = model.config
        guard new.classes == current.classes, new.imageSize == current.imageSize,
              new.inChannels == current.inChannels else {
            throw TrainingError.invalidState("a replacement model must keep classes, image size and channels")
        }
        let replacement = try VisionTransformer(weights: weights, backend: backend)
        try optimizer.reattach(replacement, elementSources: elementSources)
        model = replacement
    }

    /// The top-level settings that differ, `name checkpoint→run`, for one error line.
    static func differences(_ a: TrainingSettings, _ b: TrainingSettings) -> String {
        func fields(_ settings: TrainingSettings) -> [String: String] {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard let data = try? encoder.encode(settings),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
            return object.mapValues { "\($0)" }
        }
        let (left, right) = (fields(a), fields(b))
        return Set(left.keys).union(right.keys).sorted().compactMap { key in
            left[key] == right[key] ? nil : "\(key) \(left[key] ?? "none") → \(right[key] ?? "none")"
        }.joined(separator: ", ")
    }
}
