import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeFormats
import ViTForgeModel
import ViTForgeResampling

/// How every command that reads images decides how to prepare them for a model. Resolution order: `--mean`/`--std`
/// (each overrides only itself) > the preprocessing stored in the model > HF's `preprocessor_config.json` beside an
/// HF model > `--preprocess` (default: `fashion-mnist` for IDX data, `deit` otherwise).
struct PreprocessOptions: ParsableArguments {
    static let defaultHelp = "default: fashion-mnist for IDX data, deit (ImageNet mean/std, bicubic, crop 0.9) "
        + "for image folders and files"

    @Option(help: ArgumentHelp(
        "How to prepare images for a model that does not store it: "
            + "\(InputPreprocessing.Preset.allCases.map(\.rawValue).joined(separator: "|")) or a JSON file "
            + "(\(defaultHelp)).",
        discussion: "A model trained by ViTForge stores its preprocessing, which wins over this flag; an HF model's "
            + "preprocessor_config.json beside it does too. deit: mean 0.485,0.456,0.406, std "
            + "0.229,0.224,0.225, bicubic, crop 0.9 (timm's DeiT pretrained_cfg); imagenet: the same with crop "
            + "0.875 (timm's defaults); vit-augreg: mean = std = 0.5, bicubic, crop 0.9; "
            + "fashion-mnist: mean 0.2860, std 0.3530, crop 1. FILE.json: {\"mean\": [...], \"std\": [...], "
            + "\"interpolation\": \"bicubic\", \"cropPct\": 0.875}. Evaluation resizes the shorter side to "
            + "side/crop with Pillow's antialiased filter, then centre-crops (timm); EXIF orientation is ignored, "
            + "as Pillow's open().convert(\"RGB\") ignores it.",
        valueName: "name|file"))
    var preprocess: String?

    @Option(help: ArgumentHelp("Mean subtracted after x/255: one value, or one per channel comma-separated "
                               + "(overrides the model's).", valueName: "m[,m,m]"))
    var mean: String?

    @Option(help: ArgumentHelp("Standard deviation divided by after subtracting the mean: one value or one per "
                               + "channel (overrides the model's).", valueName: "s[,s,s]"))
    var std: String?

    func validate() throws {
        if preprocess != nil && (mean != nil || std != nil) {
            throw ValidationError("--preprocess and --mean/--std exclude each other (give a FILE.json with both)")
        }
        _ = try Self.values(mean, "--mean")
        if let stds = try Self.values(std, "--std"), stds.contains(where: { !($0 > 0) }) {
            throw ValidationError("--std must be positive")
        }
    }

    private static func values(_ text: String?, _ flag: String) throws -> [Double]? {
        guard let text else { return nil }
        let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0?.isFinite == true }) else {
            throw ValidationError("\(flag) \"\(text)\" is not a number or a comma-separated list of numbers")
        }
        return values.compactMap { $0 }
    }

    /// The preprocessing of `config`'s model (read from `modelPath`) for data `data` (nil: single image files),
    /// and where it came from, for a log line.
    func resolve(for config: ViTConfig, modelPath: String?, data: String?) throws
        -> (preprocessing: InputPreprocessing, source: String) {
        var resolved: (preprocessing: InputPreprocessing, source: String)
        if let stored = config.preprocessing {
            resolved = (stored, "stored in the model")
        } else if let modelPath,
                  let huggingFace = try InputPreprocessing.huggingFace(modelPath: modelPath, channels: config.inChannels) {
            resolved = (huggingFace, InputPreprocessing.huggingFacePath(forModel: modelPath))
        } else {
            resolved = try fallback(channels: config.inChannels, data: data)
        }
        if let preprocess, !resolved.source.hasPrefix("--preprocess") {
            resolved.source += " (--preprocess \(preprocess) ignored: the model says how)"
        }
        if mean != nil || std != nil {
            var overridden = resolved.preprocessing
            if let means = try Self.values(mean, "--mean") { overridden.mean = means }
            if let stds = try Self.values(std, "--std") { overridden.std = stds }
            resolved = (try overridden.adapted(toChannels: config.inChannels, source: "--mean/--std"),
                        resolved.source + ", --mean/--std")
        }
        return resolved
    }

    /// `--preprocess`, or its default for `data`, for a model that does not say.
    private func fallback(channels: Int, data: String?) throws -> (preprocessing: InputPreprocessing, source: String) {
        guard let preprocess else {
            let preset: InputPreprocessing.Preset = try data.map(Self.isIDX) == true ? .fashionMNIST : .deit
            return (try preset.preprocessing(channels: channels), "default \(preset.rawValue)")
        }
        if let preset = InputPreprocessing.Preset(rawValue: preprocess) {
            return (try preset.preprocessing(channels: channels), "--preprocess \(preprocess)")
        }
        guard preprocess.hasSuffix(".json") || FileManager.default.fileExists(atPath: preprocess) else {
            throw ValidationError("--preprocess \(preprocess): not one of "
                + "\(InputPreprocessing.Preset.allCases.map(\.rawValue).joined(separator: ", ")) nor a JSON file")
        }
        return (try InputPreprocessing.read(file: preprocess, channels: channels), "--preprocess \(preprocess)")
    }

    /// Whether `data` names IDX data (Fashion-MNIST or a folder of IDX files) rather than images in folders.
    static func isIDX(_ data: String) throws -> Bool {
        switch try DataSource.resolve(data) {
        case .fashionMNIST, .idxFolder: return true
        case .imageFolder, .imageFolderSplits: return false
        }
    }
}

extension InputPreprocessing {
    /// The resize filter of the data layer.
    var filter: ResamplingFilter {
        switch interpolation {
        case .bicubic: return .bicubic
        case .bilinear: return .bilinear
        case .nearest: return .nearest
        }
    }

    /// Data-loading options that prepare images this way for a model of `config`.
    func datasetOptions(for config: ViTConfig) -> DatasetOptions {
        DatasetOptions(channels: config.inChannels, side: config.imageSize, means: mean, stds: std, filter: filter,
                       cropPct: cropPct)
    }

    /// The preparation of one image for a model of `config` (single files, IDX arrays).
    func preparation(for config: ViTConfig) -> ImagePreparation {
        ImagePreparation(means: mean, stds: std, channels: config.inChannels, side: config.imageSize, filter: filter,
                         cropPct: cropPct)
    }
}
