import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgeTrain

/// The combined loss `(1−α)·CE + α·T²·KL` and its logits gradient against a float64 computation from the same
/// logits, and self-distillation's zero gradient.
@Suite(.serialized)
struct DistillationTests {
    static let batch = 7

    static func batchOfImages(_ config: ViTConfig, backend: Backend, seed: UInt64) throws -> (Buffer, Buffer, [Int32]) {
        var random = TrainingRandom(seed: seed)
        let images = (0 ..< batch * config.inChannels * config.imageSize * config.imageSize).map { _ in
            Float(random.uniform())
        }
        let labels = (0 ..< batch).map { _ in Int32(random.next() % UInt64(config.classes)) }
        return (try backend.makeBuffer(images), try backend.makeBuffer(labels), labels)
    }

    /// log softmax(z / T) in float64.
    static func logSoftmax(_ z: ArraySlice<Float>, temperature: Double) -> [Double] {
        let scaled = z.map { Double($0) / temperature }
        let maximum = scaled.max() ?? 0
        let logSum = maximum + log(scaled.reduce(0) { $0 + exp($1 - maximum) })
        return scaled.map { $0 - logSum }
    }

    @Test("KD at T=4 against another teacher: loss and logits gradient match float64", arguments: TrainTestBackends.all)
    func againstTeacher(device: TrainBackend) throws {
        let backend = device.backend
        let config = tinyConfig()
        let student = try VisionTransformer(weights: randomWeights(config, seed: 21), backend: backend)
        let teacher = try VisionTransformer(weights: randomWeights(config, seed: 22), backend: backend)
        let (alpha, temperature, smoothing) = (0.7, 4.0, 0.1)
        let loss = try TrainingLoss(backend: backend, classes: config.classes, maximumBatch: Self.batch + 2,
                                    smoothing: smoothing, teacher: teacher,
                                    distillation: DistillationSettings(alpha: alpha, temperature: temperature))
        let (images, labels, hostLabels) = try Self.batchOfImages(config, backend: backend, seed: 23)
        try student.zeroGradients()
        let value = try loss.evaluate(student: student, images: images, labels: labels, batch: Self.batch,
                                      backward: true)
        let classes = config.classes
        let count = Self.batch * classes
        let gradient = try backend.read(loss.logitGradient, count: count)
        let teacherLogits = try backend.read(teacher.forward(images: images, batch: Self.batch), count: count)
        let studentLogits = try backend.read(student.forward(images: images, batch: Self.batch), count: count)

        var crossEntropy = 0.0, divergence = 0.0, maxError = 0.0, maxGradient = 0.0
        for r in 0 ..< Self.batch {
            let rows = r * classes ..< (r + 1) * classes
            let logP = Self.logSoftmax(studentLogits[rows], temperature: 1)
            let logPs = Self.logSoftmax(studentLogits[rows], temperature: temperature)
            let logPt = Self.logSoftmax(teacherLogits[rows], temperature: temperature)
            for c in 0 ..< classes {
                let target = (c == Int(hostLabels[r]) ? 1 - smoothing : 0) + smoothing / Double(classes)
                crossEntropy -= target * logP[c]
                divergence += exp(logPt[c]) * (logPt[c] - logPs[c])
                let expected = (1 - alpha) / Double(Self.batch) * (exp(logP[c]) - target)
                    + alpha / Double(Self.batch) * temperature * (exp(logPs[c]) - exp(logPt[c]))
                maxError = max(maxError, abs(Double(gradient[r * classes + c]) - expected))
                maxGradient = max(maxGradient, abs(expected))
            }
        }
        crossEntropy /= Double(Self.batch)
        let distillation = temperature * temperature * divergence / Double(Self.batch)
        let total = (1 - alpha) * crossEntropy + alpha * distillation
        #expect(maxGradient > 1e-3, "the teacher differs, so the gradient is not trivial")
        #expect(maxError < 1e-6, "max |dLogits error| \(maxError) on \(backend.name)")
        #expect(abs(value.crossEntropy - crossEntropy) < 1e-5)
        #expect(abs((value.distillation ?? .nan) - distillation) < 1e-5 * max(1, distillation))
        #expect(abs(value.total - total) < 1e-5 * max(1, total), "loss \(value.total) vs float64 \(total)")
    }

    @Test("self-distillation (teacher = the student's weights) has exactly zero KD gradient",
          arguments: TrainTestBackends.all)
    func selfDistillation(device: TrainBackend) throws {
        let backend = device.backend
        let config = tinyConfig()
        let weights = try randomWeights(config, seed: 31)
        let student = try VisionTransformer(weights: weights, backend: backend)
        let twin = try VisionTransformer(weights: weights, backend: backend)
        let (images, labels, _) = try Self.batchOfImages(config, backend: backend, seed: 32)
        // The twin as teacher, then the student itself as its own teacher (its logits are copied before its forward).
        for teacher in [twin, student] {
            let loss = try TrainingLoss(backend: backend, classes: config.classes, maximumBatch: Self.batch,
                                        teacher: teacher, distillation: DistillationSettings(alpha: 1, temperature: 4))
            try student.zeroGradients()
            let value = try loss.evaluate(student: student, images: images, labels: labels, batch: Self.batch,
                                          backward: true)
            #expect(abs(value.distillation ?? .nan) < 1e-6, "KL of identical distributions \(value.distillation ?? .nan)")
            let gradient = try backend.read(loss.logitGradient, count: Self.batch * config.classes)
            #expect(gradient.allSatisfy { $0 == 0 }, "dLogits \(gradient.map { abs($0) }.max() ?? 0)")
            for spec in config.parameterSpecs() {
                let parameterGradient = try backend.read(#require(student.gradients[spec.name]))
                #expect(parameterGradient.allSatisfy { $0 == 0 }, "\(spec.name) has a non-zero gradient")
            }
        }
    }

    @Test("bad distillation settings are one-line errors")
    func badSettings() throws {
        let backend = TrainTestBackends.cpu
        let config = tinyConfig()
        let teacher = try VisionTransformer(weights: randomWeights(config, seed: 1), backend: backend)
        for (alpha, temperature) in [(1.5, 4.0), (0.5, 0.0), (-0.1, 1.0)] {
            #expect(throws: TrainingError.self) {
                _ = try TrainingLoss(backend: backend, classes: config.classes, maximumBatch: 2, teacher: teacher,
                                     distillation: DistillationSettings(alpha: alpha, temperature: temperature))
            }
        }
        #expect(throws: TrainingError.self) {
            _ = try TrainingLoss(backend: backend, classes: config.classes, maximumBatch: 2,
                                 distillation: DistillationSettings())
        }
    }
}
