import ViTForgeDevice
import ViTForgeModel

/// Knowledge distillation's two knobs (Hinton, Vinyals & Dean 2015).
public struct DistillationSettings: Codable, Equatable, Sendable {
    /// Weight of the distillation term; the label term gets `1 − alpha`.
    public var alpha: Double
    /// Softmax temperature T of both student and teacher.
    public var temperature: Double

    /// T = 2, the default of every command that distils (`train --teacher`, `prune --distill`, the demo): the
    /// fine-tuning recipes the pruning methods document (METHODS.md: VBP's and ViT-Slim's KD at T = 2, CPD's 2–4)
    /// and the value `prune` always used; `train` used 4 until the commands shared one flag group.
    public static let defaultTemperature = 2.0

    public init(alpha: Double = 0.5, temperature: Double = defaultTemperature) {
        self.alpha = alpha
        self.temperature = temperature
    }
}

/// One step's loss and its parts (means over the batch).
public struct LossValue: Equatable, Sendable {
    /// `(1 − α)·crossEntropy + α·distillation` (just `crossEntropy` without a teacher), plus the terms.
    public var total: Double
    public var crossEntropy: Double
    /// `T²·KL(teacher ‖ student)` at temperature T; nil without a teacher.
    public var distillation: Double?
    /// The value of each `TrainingTerm` of the step, by name (already in `total`).
    public var terms: [String: Double] = [:]
}

/// The training objective and its gradient with respect to the student's logits:
///
///     L = (1 − α) · CE(student, labels; ε) + α · T² · KL(softmax(teacher/T) ‖ softmax(student/T))
///
/// each term a mean over the batch. The T² factor (Hinton et al. 2015, §2) keeps the distillation gradient's
/// magnitude independent of T, since d/dz softmax(z/T) carries 1/T: `dL/dstudent = (1−α)/B·(p − y) + α/B·T·(ps − pt)`.
/// The teacher runs forward only; its logits are copied out before the student's forward, so the teacher may even
/// be the student itself (self-distillation, whose distillation gradient is exactly zero).
///
/// Buffers are sized once for the largest batch; smaller (last, partial) batches use a prefix of each.
public final class TrainingLoss {
    public let smoothing: Double
    public let distillation: DistillationSettings?
    public let teacher: VisionTransformer?
    let backend: Backend
    let classes: Int
    let maximumBatch: Int
    let probabilities: Buffer         // [maximumBatch, classes], softmax(student) for the CE term
    let crossEntropyLosses: Buffer    // [maximumBatch]
    let teacherLogits: Buffer         // [maximumBatch, classes]
    let studentTemperedProbabilities: Buffer  // [maximumBatch, classes], softmax(student / T)
    let teacherTemperedProbabilities: Buffer  // [maximumBatch, classes], softmax(teacher / T)
    let distillationLosses: Buffer    // [maximumBatch]
    let logitGradient: Buffer         // [maximumBatch, classes], dL/d student logits

    public init(backend: Backend, classes: Int, maximumBatch: Int, smoothing: Double = 0,
                teacher: VisionTransformer? = nil, distillation: DistillationSettings? = nil) throws {
        guard classes >= 1, maximumBatch >= 1 else {
            throw TrainingError.invalidSettings("classes \(classes) and batch \(maximumBatch) must be positive")
        }
        guard (0..<1).contains(smoothing) else {
            throw TrainingError.invalidSettings("label smoothing \(smoothing) must lie in [0, 1)")
        }
        if let distillation {
            guard teacher != nil else { throw TrainingError.invalidSettings("distillation needs a teacher model") }
            guard (0...1).contains(distillation.alpha) else {
                throw TrainingError.invalidSettings("distillation weight α = \(distillation.alpha) must lie in [0, 1]")
            }
            guard distillation.temperature > 0, distillation.temperature.isFinite else {
                throw TrainingError.invalidSettings("distillation temperature \(distillation.temperature) must be positive")
            }
        }
        if let teacher, teacher.config.classes != classes {
            throw TrainingError.invalidSettings("teacher has \(teacher.config.classes) classes, the student \(classes)")
        }
        if let teacher, teacher.backend !== backend {
            throw TrainingError.invalidSettings("teacher and student must live on the same backend")
        }
        self.backend = backend
        self.classes = classes
        self.maximumBatch = maximumBatch
        self.smoothing = smoothing
        self.teacher = distillation == nil ? nil : teacher
        self.distillation = distillation
        let logitCount = maximumBatch * classes
        probabilities = try backend.allocate(logitCount)
        crossEntropyLosses = try backend.allocate(maximumBatch)
        teacherLogits = try backend.allocate(distillation == nil ? 1 : logitCount)
        studentTemperedProbabilities = try backend.allocate(distillation == nil ? 1 : logitCount)
        teacherTemperedProbabilities = try backend.allocate(distillation == nil ? 1 : logitCount)
        distillationLosses = try backend.allocate(distillation == nil ? 1 : maximumBatch)
        logitGradient = try backend.allocate(logitCount)
    }

    /// Teacher forward (if any), student forward, the loss, and — when `backward` — its gradient accumulated into
    /// the student's gradient buffers (zero them first). `images` and `labels` hold at least `batch` images.
    /// The means divide by `meanOver` (default `batch`): one rank's share of a data-parallel batch divides by the
    /// whole batch's count, so that the ranks' losses and gradients sum to the whole batch's mean.
    /// Reads the loss back (waits for the device); a training step uses `accumulate` instead.
    public func evaluate(student: VisionTransformer, images: Buffer, labels: Buffer, batch: Int, meanOver: Int? = nil,
                         backward: Bool) throws -> LossValue {
        let denominator = try enqueue(student: student, images: images, labels: labels, batch: batch,
                                      meanOver: meanOver, backward: backward)
        let alpha = distillation?.alpha ?? 0
        let crossEntropy = try backend.sum(crossEntropyLosses, count: batch) / denominator
        let distillationLoss = try distillation.map { _ in
            try backend.sum(distillationLosses, count: batch) / denominator
        }
        let total = (1 - alpha) * crossEntropy + alpha * (distillationLoss ?? 0)
        return LossValue(total: total, crossEntropy: crossEntropy, distillation: distillationLoss)
    }

    /// `evaluate` without reading anything back: the loss's parts are added into `accumulators` on the device
    /// (`LossAccumulators.add`), a non-finite one flagging `step`.
    func accumulate(student: VisionTransformer, images: Buffer, labels: Buffer, batch: Int, backward: Bool,
                    into accumulators: LossAccumulators, step: Int) throws {
        let denominator = try enqueue(student: student, images: images, labels: labels, batch: batch, meanOver: nil,
                                      backward: backward)
        let alpha = distillation?.alpha ?? 0
        try accumulators.startStep()
        try accumulators.add(losses: crossEntropyLosses, rows: batch, part: .lastCrossEntropy, weight: 1 - alpha,
                             denominator: denominator, images: batch, step: step)
        if distillation != nil {
            try accumulators.add(losses: distillationLosses, rows: batch, part: .lastDistillation, weight: alpha,
                                 denominator: denominator, images: batch, step: step)
        }
    }

    /// Enqueues the forwards, the per-image losses and the backward; returns the denominator of the means.
    private func enqueue(student: VisionTransformer, images: Buffer, labels: Buffer, batch: Int, meanOver: Int?,
                         backward: Bool) throws -> Double {
        guard batch >= 1, batch <= maximumBatch else {
            throw TrainingError.invalidState("batch \(batch) outside 1...\(maximumBatch) of the loss buffers")
        }
        let denominator = Double(meanOver ?? batch)
        guard denominator >= Double(batch) else {
            throw TrainingError.invalidState("a share of \(batch) images cannot be part of a batch of \(Int(denominator))")
        }
        let logitCount = batch * classes
        if let teacher, distillation != nil {
            let logits = try teacher.forward(images: images, batch: batch, keepingActivations: false)
            try backend.copy(logits, srcOffset: 0, to: teacherLogits, dstOffset: 0, count: logitCount)
        }
        let studentLogits = try student.forward(images: images, batch: batch, keepingActivations: backward)
        try backend.crossEntropyForward(logits: studentLogits, labels: labels, probs: probabilities,
                                        losses: crossEntropyLosses, rows: batch, classes: classes,
                                        smoothing: Float(smoothing))
        let alpha = distillation?.alpha ?? 0
        if let distillation {
            try backend.distillationForward(student: studentLogits, teacher: teacherLogits,
                                            studentProbs: studentTemperedProbabilities,
                                            teacherProbs: teacherTemperedProbabilities, losses: distillationLosses,
                                            rows: batch, classes: classes,
                                            temperature: Float(distillation.temperature))
        }
        if backward {
            try backend.fill(logitGradient, value: 0, offset: 0, count: logitCount)
            if alpha < 1 {
                try backend.crossEntropyBackward(probs: probabilities, labels: labels, dLogits: logitGradient,
                                                 rows: batch, classes: classes, smoothing: Float(smoothing),
                                                 scale: Float((1 - alpha) / denominator))
            }
            if let distillation, alpha > 0 {
                try backend.distillationBackward(studentProbs: studentTemperedProbabilities,
                                                 teacherProbs: teacherTemperedProbabilities,
                                                 dStudent: logitGradient, rows: batch, classes: classes,
                                                 temperature: Float(distillation.temperature),
                                                 scale: Float(alpha / denominator))
            }
            try student.backward(dLogits: logitGradient)
        }
        return denominator
    }
}
