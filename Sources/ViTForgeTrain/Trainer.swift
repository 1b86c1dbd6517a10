import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

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
    public internal(set) var model: VisionTransformer
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

    let backend: Backend
    /// The most images of one rank's share of a batch (`maximumBatch` in one process).
    let maximumShard: Int
    let deviceImages: Buffer   // [maximumShard, C, H, W]
    let deviceLabels: Buffer   // [maximumShard] Int32
    /// Two host staging areas each for images [maximumBatch, C, H, W] and labels [maximumBatch], used in turn: the
    /// batch is written into one while the device may still read the other's upload (`Backend.makeStaging`).
    let stagedImages: [StagingBuffer]
    let stagedLabels: [StagingBuffer]
    var stagingTurn = 0
    /// The loss of the steps, kept on the device until read (`readLoss`).
    let accumulators: LossAccumulators
    /// What the host adds to the device's sums: the terms' values and, in a data-parallel run, the whole loss
    /// (summed over the ranks through the host): over the progress window, and the last step's.
    var windowHostSum = 0.0
    var windowSteps = 0
    var lastHostValue = LossValue(total: 0, crossEntropy: 0, distillation: nil)
    /// The step after which the device's sums were last read, and when.
    var lastReadStep = 0
    var lastReadTime: UInt64 = 0
    var stopRequested = false
    // This process's segment of the run, for images/s and ETA.
    var segmentStart: UInt64 = 0
    var segmentSteps = 0
    var segmentImages = 0

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
}
