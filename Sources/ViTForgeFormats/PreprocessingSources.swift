import Foundation

/// Where an `InputPreprocessing` can come from besides the model itself: named recipes (`--preprocess NAME`), a
/// JSON file (`--preprocess FILE.json`), and Hugging Face's `preprocessor_config.json` beside an HF model.
extension InputPreprocessing {
    /// The recipes `--preprocess` names, with timm's `pretrained_cfg` facts.
    public enum Preset: String, CaseIterable, Sendable {
        /// timm's DeiT checkpoints (`deit_*` pretrained_cfg): IMAGENET_DEFAULT_MEAN/STD, bicubic, crop_pct 0.9.
        case deit
        /// timm's AugReg ViTs (`vit_*.augreg_*`): mean = std = 0.5, bicubic, crop_pct 0.9.
        case vitAugreg = "vit-augreg"
        /// timm's ImageNet defaults (IMAGENET_DEFAULT_MEAN/STD, DEFAULT_CROP_PCT 0.875, bicubic): torchvision's
        /// resize-256-crop-224 recipe.
        case imagenet
        /// The Fashion-MNIST fixtures: mean 0.2860, std 0.3530, no crop.
        case fashionMNIST = "fashion-mnist"

        /// The recipe for a model of `channels` input channels: three values reduce to their average for one
        /// channel (timm's grey ImageNet statistics 0.449 / 0.226); one value repeats for every channel.
        public func preprocessing(channels: Int) throws -> InputPreprocessing {
            let recipe: InputPreprocessing
            switch self {
            case .deit, .imagenet:
                recipe = InputPreprocessing(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225],
                                            interpolation: .bicubic, cropPct: self == .deit ? 0.9 : 0.875)
            case .vitAugreg:
                recipe = InputPreprocessing(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], interpolation: .bicubic,
                                            cropPct: 0.9)
            case .fashionMNIST:
                recipe = InputPreprocessing(mean: [0.2860], std: [0.3530], interpolation: .bicubic, cropPct: 1)
            }
            return try recipe.adapted(toChannels: channels, source: "--preprocess \(rawValue)")
        }
    }

    /// These statistics for `channels` channels: as they are when the counts agree, one value repeated, three
    /// averaged (timm's rounding to three decimals) for a one-channel model; otherwise an error naming `source`.
    public func adapted(toChannels channels: Int, source: String) throws -> InputPreprocessing {
        func adapt(_ values: [Double]) throws -> [Double] {
            if values.count == channels { return values }
            if values.count == 1 { return Array(repeating: values[0], count: channels) }
            if values.count == 3 && channels == 1 {
                return [((values.reduce(0, +) / 3) * 1000).rounded() / 1000]
            }
            throw ModelFileError(file: source, .invalidConfig(
                "\(values.count) mean/std values for a model with \(channels) input channels"))
        }
        var result = self
        result.mean = try adapt(mean)
        result.std = try adapt(std)
        if let problem = result.problem(channels: channels) { throw ModelFileError(file: source, .invalidConfig(problem)) }
        return result
    }

    /// A JSON file: `{"mean": [...], "std": [...], "interpolation": "bicubic", "cropPct": 0.875}` (what
    /// `vitforge.config` stores; timm's `crop_pct` is accepted too, and interpolation and crop default to bicubic
    /// and 0.875).
    public static func read(file: String, channels: Int) throws -> InputPreprocessing {
        let object = try jsonObject(file)
        func numbers(_ key: String) throws -> [Double] {
            if let single = object[key] as? NSNumber, !(object[key] is Bool) { return [single.doubleValue] }
            guard let list = object[key] as? [Any], !list.isEmpty else {
                throw ModelFileError(file: file, .invalidConfig("\"\(key)\" is missing or not a list of numbers"))
            }
            return try list.map { value in
                guard let number = value as? NSNumber, !(value is Bool) else {
                    throw ModelFileError(file: file, .invalidConfig("\"\(key)\" holds something other than numbers"))
                }
                return number.doubleValue
            }
        }
        var interpolation = Interpolation.bicubic
        if let name = object["interpolation"] {
            guard let text = name as? String, let value = Interpolation(rawValue: text) else {
                throw ModelFileError(file: file, .invalidConfig(
                    "\"interpolation\" must be one of \(Interpolation.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
            interpolation = value
        }
        var cropPct = 0.875
        if let value = object["cropPct"] ?? object["crop_pct"] {
            guard let number = value as? NSNumber, !(value is Bool) else {
                throw ModelFileError(file: file, .invalidConfig("\"cropPct\" is not a number"))
            }
            cropPct = number.doubleValue
        }
        return try InputPreprocessing(mean: try numbers("mean"), std: try numbers("std"), interpolation: interpolation,
                                      cropPct: cropPct).adapted(toChannels: channels, source: file)
    }

    /// The file HF keeps beside a model: `preprocessor_config.json` in the model file's folder.
    public static func huggingFacePath(forModel modelPath: String) -> String {
        ((modelPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("preprocessor_config.json")
    }

    /// HF's image processor settings beside `modelPath`, or nil when there is no such file. `image_mean`,
    /// `image_std`, `resample` (Pillow's numbers: 0 nearest, 2 bilinear, 3 bicubic) and, with `do_center_crop`,
    /// `crop_size` over `size` as the crop share. HF's ViT processor squashes the image to the model's side (no
    /// crop); this reads it as crop 1, which resizes the shorter side instead: the same on square images.
    public static func huggingFace(modelPath: String, channels: Int) throws -> InputPreprocessing? {
        let path = huggingFacePath(forModel: modelPath)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let object = try jsonObject(path)
        func invalid(_ message: String) -> ModelFileError { ModelFileError(file: path, .invalidConfig(message)) }
        func numbers(_ key: String) throws -> [Double] {
            guard let list = object[key] as? [NSNumber], !list.isEmpty else {
                throw invalid("\"\(key)\" is missing or not a list of numbers")
            }
            return list.map(\.doubleValue)
        }
        func side(_ key: String) -> Double? {
            if let number = object[key] as? NSNumber { return number.doubleValue }
            guard let size = object[key] as? [String: Any] else { return nil }
            return ((size["shortest_edge"] ?? size["height"]) as? NSNumber)?.doubleValue
        }
        let interpolation: Interpolation
        switch (object["resample"] as? NSNumber)?.intValue ?? 2 {
        case 0: interpolation = .nearest
        case 2: interpolation = .bilinear
        case 3: interpolation = .bicubic
        case let other: throw invalid("resample \(other) (ViTForge resamples nearest 0, bilinear 2, bicubic 3); give --preprocess")
        }
        var cropPct = 1.0
        if object["do_center_crop"] as? Bool == true, let crop = side("crop_size"), let size = side("size"), size > 0 {
            cropPct = crop / size
        }
        return try InputPreprocessing(mean: try numbers("image_mean"), std: try numbers("image_std"),
                                      interpolation: interpolation, cropPct: cropPct)
            .adapted(toChannels: channels, source: path)
    }

    private static func jsonObject(_ path: String) throws -> [String: Any] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ModelFileError(file: path, .invalidConfig("cannot read: \(SafetensorsFile.ioMessage(error))"))
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelFileError(file: path, .invalidConfig("not a JSON object"))
        }
        return object
    }

    /// One line for logs: `bicubic, crop 0.875, mean 0.485,0.456,0.406, std 0.229,0.224,0.225`.
    public var summary: String {
        func list(_ values: [Double]) -> String { values.map { String($0) }.joined(separator: ",") }
        return "\(interpolation.rawValue), crop \(cropPct), mean \(list(mean)), std \(list(std))"
    }
}
