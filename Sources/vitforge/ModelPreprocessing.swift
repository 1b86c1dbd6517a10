import ViTForgeData
import ViTForgeModel

/// How commands prepare images for a model today: the model's stored mean/std when it has them, else the data
/// set's defaults (`Dataset.makePreparation`). The one place a resolved `InputPreprocessing` replaces.
func datasetOptions(for config: ViTConfig, classes: [Int]? = nil, remapLabels: Bool = false,
                    validationFraction: Double = 0, seed: UInt64) -> DatasetOptions {
    DatasetOptions(channels: config.inChannels, side: config.imageSize, means: config.preprocessing?.mean,
                   stds: config.preprocessing?.std, classes: classes, remapLabels: remapLabels,
                   validationFraction: validationFraction, seed: seed)
}

/// What the current preparation does, as the model stores it: the training data's mean/std, images resized
/// bilinearly to the model's side (crop 1: no crop).
func describedPreprocessing(_ preparation: ImagePreparation) -> InputPreprocessing {
    InputPreprocessing(mean: preparation.means, std: preparation.stds, interpolation: .bilinear, cropPct: 1)
}
