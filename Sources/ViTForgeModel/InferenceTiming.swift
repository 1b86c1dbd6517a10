import Foundation
import ViTForgeDevice
import ViTForgeFormats

/// Measured inference speed of a model at one batch size.
public struct InferenceTiming: Codable, Equatable, Sendable {
    public var batch: Int
    public var latencyMsMedian: Double
    public var imagesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case batch
        case latencyMsMedian = "latency_ms_median"
        case imagesPerSecond = "images_per_second"
    }
}

extension VisionTransformer {
    /// Median latency of `runs` forwards of `batch` random images after `warmup` forwards (waiting for the device
    /// after each), so every model in a report is timed the same way, on the same backend, in the same process.
    public func timeInference(batch: Int, warmup: Int = 2, runs: Int = 5) throws -> InferenceTiming {
        let count = batch * config.inChannels * config.imageSize * config.imageSize
        var state: UInt64 = 0x1234_5678
        let pixels = (0..<count).map { _ -> Float in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
        }
        let images = try backend.makeBuffer(pixels)
        let latency = try Latency.measure(warmup: warmup, runs: runs) {
            try forward(images: images, batch: batch, keepingActivations: false)
            try backend.synchronize()
        }
        let median = latency.medianSeconds
        return InferenceTiming(batch: batch, latencyMsMedian: median * 1000, imagesPerSecond: Double(batch) / median)
    }
}
