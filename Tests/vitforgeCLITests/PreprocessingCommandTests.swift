import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// Preprocessing belongs to the model: `train` stores what it trained with, prune keeps it, and the flags that
/// choose it refuse to be combined.
struct PreprocessingCommandTests {
    /// A train/val ImageFolder of the preprocessing fixture's odd-sized PNG/JPEG files (grey, RGB, RGBA).
    static func imageFolder(in folder: TemporaryFolder) throws -> String {
        let root = folder.path("photos")
        let sources = packageRoot.appendingPathComponent("Tests/Fixtures/preprocess/source")
        let layout = [("train/ant", "grey.png"), ("train/ant", "rgb.jpg"), ("train/bee", "rgba.png"),
                      ("train/bee", "small.png"), ("train/cat", "grey.jpg"), ("train/cat", "rgb.jpg"),
                      ("val/ant", "small.png"), ("val/bee", "grey.jpg"), ("val/cat", "rgba.png")]
        for (index, (classFolder, file)) in layout.enumerated() {
            let target = root + "/" + classFolder
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: sources.appendingPathComponent(file).path,
                                             toPath: target + "/\(index)-" + file)
        }
        return root
    }

    /// A 3-channel, 3-class ViT small enough to train in a moment: 16 px, patch 4, width 24, two blocks.
    static func config(in folder: TemporaryFolder) throws -> String {
        let config = ViTConfig.timm(imageSize: 16, patchSize: 4, classes: 3, embedDim: 24, depth: 2, heads: 2)
        let path = folder.path("tiny.json")
        try Data(config.jsonString().utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("train stores the preprocessing it used (--preprocess vit-augreg); prune keeps it; a later fine-tune keeps it")
    func storedThroughTrainAndPrune() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.imageFolder(in: folder)
        let trained = folder.path("trained.safetensors"), pruned = folder.path("pruned.safetensors")
        let training = try vitforge([
            "train", "--config", try Self.config(in: folder), "--data", data, "--preprocess", "vit-augreg",
            "--epochs", "1", "--batch-size", "3", "--crop-scale", "0.3,1", "--out", trained, "--device", "cpu",
        ])
        #expect(training.status == 0, "\(training.stderr)")
        let augreg = try InputPreprocessing.Preset.vitAugreg.preprocessing(channels: 3)
        #expect(try ViTWeights.load(path: trained).config.preprocessing == augreg)
        #expect(training.stdout.contains("preprocessing: bicubic, crop 0.9"), "\(training.stdout)")

        // The model's own preprocessing wins over --preprocess, which says so; the pruned model keeps it.
        let pruning = try vitforge([
            "prune", "--model", trained, "--data", data, "--method", "magnitude", "--keep-mlp", "0.5",
            "--latency-batches", "1", "--batch-size", "3", "--out", pruned, "--device", "cpu",
        ])
        #expect(pruning.status == 0, "\(pruning.stderr)")
        let prunedWeights = try ViTWeights.load(path: pruned)
        #expect(prunedWeights.config.preprocessing == augreg)
        #expect(prunedWeights.config.blocks.map(\.mlpHidden).reduce(0, +) < 2 * 96)

        // Fine-tuning the pruned model keeps its stored preprocessing; an explicit --preprocess is ignored, saying so.
        let resumed = try vitforge([
            "train", "--init", pruned, "--data", data, "--epochs", "1", "--batch-size", "3",
            "--preprocess", "deit", "--out", folder.path("again.safetensors"), "--device", "cpu",
        ])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("--preprocess deit ignored"), "\(resumed.stdout)")
        #expect(try ViTWeights.load(path: folder.path("again.safetensors")).config.preprocessing == augreg)
    }

    @Test("--preprocess with --mean or --std is a one-line error; an unknown preset names the choices")
    func conflictingFlags() throws {
        for extra in [["--mean", "0.5"], ["--std", "0.2"]] {
            let result = try vitforge(["eval", "--model", fixture("fm-vit-c.safetensors"), "--preprocess", "deit"] + extra)
            #expect(result.status != 0)
            #expect(result.stderr.contains("--preprocess and --mean/--std exclude each other"), "\(result.stderr)")
        }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let unknown = try vitforge(["train", "--config", try Self.config(in: folder), "--data",
                                    try Self.imageFolder(in: folder), "--preprocess", "resnet",
                                    "--out", folder.path("m.safetensors"), "--device", "cpu"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("deit, vit-augreg, imagenet, fashion-mnist"), "\(unknown.stderr)")
        #expect(!unknown.stderr.contains("Stack dump") && unknown.stderrLines.count <= 3, "\(unknown.stderr)")
    }

    @Test("train --input-size resamples an --init model's position embedding and trains at the new size")
    func inputSize() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.imageFolder(in: folder)
        let base = folder.path("base.safetensors"), larger = folder.path("larger.safetensors")
        let first = try vitforge(["train", "--config", try Self.config(in: folder), "--data", data, "--epochs", "1",
                                  "--batch-size", "3", "--out", base, "--device", "cpu"])
        #expect(first.status == 0, "\(first.stderr)")
        let second = try vitforge(["train", "--init", base, "--input-size", "20", "--data", data, "--epochs", "1",
                                   "--batch-size", "3", "--out", larger, "--device", "cpu"])
        #expect(second.status == 0, "\(second.stderr)")
        let weights = try ViTWeights.load(path: larger)
        #expect(weights.config.imageSize == 20 && weights["pos_embed"]?.shape == [1, 26, 24])
        #expect(weights.config.preprocessing == (try InputPreprocessing.Preset.deit.preprocessing(channels: 3)))
        let bad = try vitforge(["train", "--init", base, "--input-size", "18", "--data", data,
                                "--out", folder.path("bad.safetensors"), "--device", "cpu"])
        #expect(bad.status != 0 && bad.stderr.contains("patch size 4"), "\(bad.stderr)")
    }
}
