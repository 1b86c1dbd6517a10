import Foundation

/// How an image becomes the model's input tensor, stored with the model (`vitforge.config` version 2) so that
/// train, eval, predict, prune's data passes and export all prepare images the way the model was trained.
/// The input side and channel count are the model's own (`ViTConfig.imageSize`, `inChannels`).
///
/// Evaluation follows timm's `transforms_imagenet_eval`: resize the shorter side to `floor(size / cropPct)` with
/// `interpolation` (antialiased, as Pillow resamples), centre-crop `size × size`, scale to [0, 1], then
/// `(x − mean) / std` per channel.
public struct InputPreprocessing: Codable, Equatable, Sendable {
    /// Resampling filter, as timm names it (`pretrained_cfg["interpolation"]`).
    public enum Interpolation: String, Codable, Sendable, CaseIterable {
        case bicubic, bilinear, nearest
    }

    /// Per input channel, applied to pixels scaled to [0, 1].
    public var mean: [Double]
    public var std: [Double]
    public var interpolation: Interpolation
    /// Share of the resized image the centre crop keeps (timm `crop_pct`); 1 resizes the shorter side to the input.
    public var cropPct: Double

    public init(mean: [Double], std: [Double], interpolation: Interpolation = .bicubic, cropPct: Double = 0.875) {
        self.mean = mean
        self.std = std
        self.interpolation = interpolation
        self.cropPct = cropPct
    }

    /// Every reason this cannot prepare images for a model of `channels` input channels (nil when it can).
    public func problem(channels: Int) -> String? {
        if mean.count != channels || std.count != channels {
            return "preprocessing: mean and std need one value per input channel (\(channels))"
        }
        if mean.contains(where: { !$0.isFinite }) || std.contains(where: { !($0 > 0) || !$0.isFinite }) {
            return "preprocessing: mean must be finite and std positive"
        }
        if !(cropPct > 0 && cropPct <= 1) { return "preprocessing: cropPct must be in (0, 1]" }
        return nil
    }
}

/// The held-out part of a folder without splits that a model was trained beside, so that `eval --split auto`
/// finds the same images again (never the training images without saying so).
public struct HeldOutSplit: Codable, Equatable, Sendable {
    /// Share of each class held out (`train --val-fraction`).
    public var fraction: Double
    /// The seed that picked the held-out images.
    public var seed: UInt64

    public init(fraction: Double, seed: UInt64) {
        self.fraction = fraction
        self.seed = seed
    }
}
