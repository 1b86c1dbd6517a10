import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics

/// `train --input-size` against timm, and where a model's preprocessing comes from.
struct PositionEmbeddingResamplingTests {
    /// `Tests/Fixtures/preprocess/pos-embed.safetensors` holds timm's `resample_abs_pos_embed` (bicubic,
    /// antialias=True) of the fixtures' position embeddings (Tests/Fixtures/tools/make_preprocess_fixture.py):
    /// upsampling (7 → 9, 4 → 6) and shrinking (7 → 5, where antialiasing widens the filter).
    @Test("position embeddings resampled to another grid equal timm's resample_abs_pos_embed",
          arguments: [("fm-vit-c", 5, 2), ("fm-vit-c", 9, 2), ("fm-vit-b", 6, 4)])
    func matchesTimm(model: String, grid: Int, heads: Int) throws {
        let weights = try ViTWeights.load(path: fixture(model + ".safetensors"), heads: heads)
        let size = grid * weights.config.patchSize
        let resized = try weights.resampled(toInputSize: size)
        let reference = try SafetensorsFile(path: fixture("preprocess/pos-embed.safetensors"))
        let expected = try reference.floats("\(model).\(grid)")
        let ours = try #require(resized["pos_embed"])
        #expect(ours.shape == [1, 1 + grid * grid, weights.config.residualWidth])
        #expect(resized.config.imageSize == size && resized.config.gridSize == grid)
        #expect(ours.values.count == expected.count)
        let largest = zip(ours.values, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(largest < 1e-5, "largest difference \(largest)")
        // The class token's embedding is kept as it is, and nothing else changes.
        let original = try #require(weights["pos_embed"])
        #expect(Array(ours.values[0 ..< weights.config.residualWidth]) == Array(original.values[0 ..< weights.config.residualWidth]))
        #expect(resized["blocks.0.attn.qkv.weight"] == weights["blocks.0.attn.qkv.weight"])
    }

    @Test("the same size is the identity; a size that is not a multiple of the patch is an error naming it")
    func identityAndErrors() throws {
        let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        #expect(try weights.resampled(toInputSize: 28)["pos_embed"] == weights["pos_embed"])
        #expect(throws: ModelFileError.self) { try weights.resampled(toInputSize: 30) }
        do { _ = try weights.resampled(toInputSize: 30) } catch {
            #expect("\(error)".contains("fm-vit-c.safetensors") && "\(error)".contains("patch size 4"), "\(error)")
        }
    }
}

struct PreprocessingSourceTests {
    @Test("presets follow timm's pretrained_cfg and adapt to one-channel models")
    func presets() throws {
        let deit = try InputPreprocessing.Preset.deit.preprocessing(channels: 3)
        #expect(deit.mean == [0.485, 0.456, 0.406] && deit.std == [0.229, 0.224, 0.225])
        #expect(deit.cropPct == 0.9 && deit.interpolation == .bicubic)
        #expect(try InputPreprocessing.Preset.imagenet.preprocessing(channels: 3).cropPct == 0.875)
        let augreg = try InputPreprocessing.Preset.vitAugreg.preprocessing(channels: 3)
        #expect(augreg.mean == [0.5, 0.5, 0.5] && augreg.std == [0.5, 0.5, 0.5] && augreg.cropPct == 0.9)
        let grey = try InputPreprocessing.Preset.imagenet.preprocessing(channels: 1)
        #expect(grey.mean == [0.449] && grey.std == [0.226])
        let fashion = try InputPreprocessing.Preset.fashionMNIST.preprocessing(channels: 3)
        #expect(fashion.mean == [0.286, 0.286, 0.286] && fashion.cropPct == 1)
        #expect(throws: ModelFileError.self) { try InputPreprocessing.Preset.deit.preprocessing(channels: 2) }
    }

    @Test("HF preprocessor_config.json: mean, std, resample, crop share; absent gives nil; bad values name the file")
    func huggingFace() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-hfpre-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = folder.appendingPathComponent("model.safetensors").path
        #expect(try InputPreprocessing.huggingFace(modelPath: model, channels: 3) == nil)
        let config = folder.appendingPathComponent("preprocessor_config.json")
        try Data("""
            {"do_center_crop": true, "crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 256},
             "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.4], "resample": 3}
            """.utf8).write(to: config)
        let read = try #require(try InputPreprocessing.huggingFace(modelPath: model, channels: 3))
        #expect(read == InputPreprocessing(mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.4], interpolation: .bicubic,
                                           cropPct: 0.875))
        try Data(#"{"image_mean": [0.5], "image_std": [0.5], "resample": 2, "size": {"height": 28, "width": 28}}"#.utf8)
            .write(to: config)
        #expect(try InputPreprocessing.huggingFace(modelPath: model, channels: 1)
                == InputPreprocessing(mean: [0.5], std: [0.5], interpolation: .bilinear, cropPct: 1))
        try Data(#"{"image_mean": [0.5], "image_std": [0.5], "resample": 1}"#.utf8).write(to: config)
        do {
            _ = try InputPreprocessing.huggingFace(modelPath: model, channels: 1)
            Issue.record("Lanczos resampling was accepted")
        } catch {
            #expect("\(error)".contains("preprocessor_config.json") && "\(error)".contains("resample 1"), "\(error)")
        }
    }

    @Test("stored preprocessing round-trips through a saved model; version-1 files load without it")
    func storedRoundTrip() throws {
        var weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        #expect(weights.config.preprocessing == nil)
        let stored = InputPreprocessing(mean: [0.3], std: [0.4], interpolation: .bilinear, cropPct: 0.95)
        try weights.setPreprocessing(stored)
        #expect(throws: ModelFileError.self) {
            try weights.setPreprocessing(InputPreprocessing(mean: [0.3, 0.3, 0.3], std: [0.4, 0.4, 0.4]))
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-pre-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try weights.save(to: path)
        #expect(try ViTWeights.load(path: path).config.preprocessing == stored)
        // A version-1 configuration (no preprocessing key) still reads.
        var old = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2).config
        old.version = 1
        let text = old.jsonString().replacingOccurrences(of: "\"version\":2", with: "\"version\":1")
        #expect(text.contains("\"version\":1") && !text.contains("preprocessing"))
        #expect(try ViTConfig.fromJSON(text, file: "v1").preprocessing == nil)
    }
}
