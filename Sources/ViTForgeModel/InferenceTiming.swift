import Foundation
import ViTForgeDevice

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
        let images = try timingImages(batch: batch)
        let latency = try Latency.measure(warmup: warmup, runs: runs) { try timedForward(images, batch: batch) }
        return InferenceTiming(batch: batch, medianSeconds: latency.medianSeconds)
    }

    /// Times several models at one batch size in alternating rounds (each round runs every model once, the order
    /// reversed every other round), after `warmup` untimed forwards each, and reports each model's median over the
    /// rounds. Timing one model's runs and then the other's lets a burst of load from another process land on one
    /// model only, which on a shared machine made a pruned model read slower than its parent; alternating spreads
    /// the burst over both, so their ratio is what a report may compare.
    public static func timeInferenceAlternating(_ models: [VisionTransformer], batch: Int, warmup: Int = 2,
                                                rounds: Int = 5) throws -> [InferenceTiming] {
        let images = try models.map { try $0.timingImages(batch: batch) }
        for (model, input) in zip(models, images) {
            for _ in 0 ..< warmup { try model.timedForward(input, batch: batch) }
        }
        var seconds = [[Double]](repeating: [], count: models.count)
        for round in 0 ..< max(rounds, 1) {
            let order = round % 2 == 0 ? Array(models.indices) : models.indices.reversed()
            for index in order {
                seconds[index].append(try Latency.measure(warmup: 0, runs: 1) {
                    try models[index].timedForward(images[index], batch: batch)
                }.medianSeconds)
            }
        }
        return seconds.map { InferenceTiming(batch: batch, medianSeconds: Latency.median($0)) }
    }

    /// `batch` images of fixed pseudo-random pixels (timing must not depend on the data, and needs none).
    private func timingImages(batch: Int) throws -> Buffer {
        let count = batch * config.inChannels * config.imageSize * config.imageSize
        var state: UInt64 = 0x1234_5678
        let pixels = (0..<count).map { _ -> Float in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
        }
        return try backend.makeBuffer(pixels)
    }

    private func timedForward(_ images: Buffer, batch: Int) throws {
        try forward(images: images, batch: batch, keepingActivations: false)
        try backend.synchronize()
    }
}

extension InferenceTiming {
    init(batch: Int, medianSeconds: Double) {
        self.init(batch: batch, latencyMsMedian: medianSeconds * 1000, imagesPerSecond: Double(batch) / medianSeconds)
    }
}
