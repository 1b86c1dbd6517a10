import Foundation
import Testing
import ViTForgeDevice
import ViTForgeModel
@testable import ViTForgeTrain

struct ScheduleTests {
    /// (step, expected) for peak 1e-3, 10 warm-up steps, 100 in all, floor 1e-5.
    static let cases: [(Int, Double)] = {
        let (peak, floor) = (1e-3, 1e-5)
        func cosine(_ s: Double) -> Double { floor + (peak - floor) * 0.5 * (1 + cos(Double.pi * (s - 10) / 90)) }
        return [(0, 1e-4), (4, 5e-4), (9, 1e-3), (10, 1e-3), (55, floor + (peak - floor) * 0.5), (32, cosine(32)),
                (99, cosine(99)), (100, floor), (1000, floor)]
    }()

    @Test("warm-up then cosine to the floor, at chosen steps", arguments: cases)
    func values(step: Int, expected: Double) {
        let schedule = LearningRateSchedule(peak: 1e-3, warmupSteps: 10, totalSteps: 100, floor: 1e-5)
        #expect(abs(schedule.learningRate(step: step) - expected) < 1e-15, "step \(step)")
    }

    @Test("the fixture recipe: 5% of 3283 steps is 164 warm-up steps; no warm-up starts at the peak")
    func recipe() {
        let schedule = LearningRateSchedule(peak: 1e-3, warmupFraction: 0.05, totalSteps: 3283)
        #expect(schedule.warmupSteps == 164)
        #expect(schedule.learningRate(step: 3282) > 0 && schedule.learningRate(step: 3282) < 1e-9)
        let noWarmup = LearningRateSchedule(peak: 2e-3, warmupSteps: 0, totalSteps: 7)
        #expect(noWarmup.learningRate(step: 0) == 2e-3)
        #expect(LearningRateSchedule.constant(1e-3).learningRate(step: 123_456) == 1e-3)
    }

    @Test("clipping scales the global norm down to the maximum, and leaves smaller norms bit-identical",
          arguments: TrainTestBackends.all)
    func clipping(device: TrainBackend) throws {
        let backend = device.backend
        var random = TrainingRandom(seed: 77)
        let hosts = [13, 197, 1, 37].map { n in (0 ..< n).map { _ in Float(random.uniform()) } }
        let buffers = try hosts.map { (try backend.makeBuffer($0), $0.count) }
        let norm = hosts.joined().reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let measured = try GradientClipping.globalNorm(buffers, backend: backend)
        #expect(abs(measured - norm) < 1e-9 * norm)

        let unchanged = try GradientClipping.clip(buffers, maxNorm: 2 * norm, backend: backend)
        #expect(abs(unchanged - norm) < 1e-9 * norm)
        for ((buffer, count), host) in zip(buffers, hosts) {
            #expect(try backend.read(buffer, count: count).map(\.bitPattern) == host.map(\.bitPattern))
        }

        let before = try GradientClipping.clip(buffers, maxNorm: norm / 3, backend: backend)
        #expect(abs(before - norm) < 1e-9 * norm)
        let after = try GradientClipping.globalNorm(buffers, backend: backend)
        #expect(abs(after - norm / 3) < 1e-6 * norm, "clipped norm \(after), maximum \(norm / 3)")
        #expect(after <= norm / 3 * (1 + 1e-6))
    }
}
