import Foundation
import Testing
import ViTForgeDevice
@testable import ViTForgeModel

/// How models are timed (no assertion on a time: only on what is counted and how it is reduced).
struct InferenceTimingTests {
    @Test("the median of an odd count is the middle value, of an even count the mean of the two middle ones")
    func median() {
        #expect(Latency.median([5, 1, 3]) == 3)
        #expect(Latency.median([4, 1, 3, 10]) == 3.5)
        #expect(Latency.median([2]) == 2)
    }

    @Test("alternating rounds time every model once per round and report one timing each, in the given order")
    func alternatingRoundsTimeEveryModel() throws {
        let backend = CPUBackend()
        let problem = try ReferenceModelTests.problem(.tokenPooling, seed: 5)
        let model = try VisionTransformer(weights: problem.weights, backend: backend)
        let other = try VisionTransformer(weights: ReferenceModelTests.problem(.averagePooling, seed: 6).weights,
                                          backend: backend)
        let timings = try VisionTransformer.timeInferenceAlternating([model, other], batch: 3, warmup: 1, rounds: 3)
        #expect(timings.count == 2)
        for timing in timings {
            #expect(timing.batch == 3)
            #expect(timing.latencyMsMedian > 0 && timing.latencyMsMedian.isFinite)
            #expect(abs(timing.imagesPerSecond * timing.latencyMsMedian / 1000 - 3) < 1e-9)
        }
    }
}
