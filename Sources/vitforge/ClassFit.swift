import ViTForgeData
import ViTForgeFormats
import ViTForgeModel

/// Refuses data whose labels the model has no output for, before any pass over the data on the device: an image of
/// class 10 scored by a 10-output head has no logit to win (a folder of 11 classes, one of them an empty folder,
/// is the common way to get there). `subset` is `--classes` when the labels keep their data-set numbers.
func checkClassesFit(data: String, dataset: Dataset, subset: [Int]?, model: String, config: ViTConfig) throws {
    // A trimmed head (classIds) names the classes it predicts; the evaluator maps outputs through it.
    guard config.classIds == nil else { return }
    let needed = subset.map { ($0.max() ?? -1) + 1 } ?? dataset.classCount
    guard needed > config.classes else { return }
    let what = subset == nil ? "has \(dataset.classCount) classes" : "--classes uses class \(needed - 1)"
    throw DataFileError(file: data, .invalidRequest(
        "\(what), but the model \(model) has \(config.classes) outputs (classes 0...\(config.classes - 1)); "
            + "give a model with \(needed) outputs, remove empty class folders, or pick --classes it has"))
}
