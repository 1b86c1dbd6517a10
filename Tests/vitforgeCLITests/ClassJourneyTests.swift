import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// A user's own photos, through the binary: fine-tune a 10-class model to their 3 named classes, prune it,
/// evaluate on their val split, predict single files by name, export with names and preprocessing in the ONNX file.
struct ClassJourneyTests {
    static let classes = ["bag", "dress", "sneaker"]
    static let deitTinyPath = packageRoot.deletingLastPathComponent()
        .appendingPathComponent("shared/fixtures/deit_tiny_patch16_224.safetensors").path
    static let deitTinyPresent = FileManager.default.fileExists(atPath: deitTinyPath)

    /// `folder/photos` with train (6 per class: 18 images, 3 steps at batch 8) and val (3 per class).
    static func photos(_ folder: TemporaryFolder) throws -> String {
        let root = folder.path("photos")
        try ImageFolderMaker.make(root, classes: classes, perClass: ["train": 6, "val": 3])
        return root
    }

    /// One quick epoch of `train` (batch 8, no periodic checkpoints) from `start` (e.g. `--init M` or `--arch A`).
    static func train(_ start: [String], data: String, out: String, _ extra: [String] = []) throws -> CommandResult {
        try vitforge(["train"] + start + ["--data", data, "--epochs", "1", "--batch-size", "8", "--checkpoint-every",
                                          "0", "--out", out, "--device", "cpu"] + extra)
    }

    static let fashionModel = ["--init", fixture("fm-vit-c.safetensors"), "--heads", "2"]

    @Test("fm-vit-c → 3 named classes: train --init replaces the head, prune keeps the names, eval, predict, export")
    func fashionModelJourney() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.photos(folder)
        let tuned = folder.path("tuned.safetensors"), pruned = folder.path("pruned.safetensors")

        let train = try Self.train(Self.fashionModel, data: data, out: tuned)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("new 3-way head for bag, dress, sneaker; the 10-way head is dropped"),
                "\(train.stdout)")
        let trained = try ViTWeights.load(path: tuned).config
        #expect(trained.classes == 3 && trained.classNames == Self.classes)
        #expect(trained.preprocessing?.mean.count == 1)

        let prune = try vitforge(["prune", "--model", tuned, "--data", data, "--method", "magnitude",
                                  "--keep-mlp", "0.5", "--batch-size", "8", "--latency-batches", "2",
                                  "--out", pruned, "--device", "cpu"])
        #expect(prune.status == 0, "\(prune.stderr)")
        let prunedConfig = try ViTWeights.load(path: pruned).config
        #expect(prunedConfig.classNames == Self.classes && prunedConfig.preprocessing == trained.preprocessing)
        #expect(prunedConfig.blocks.map(\.mlpHidden).reduce(0, +) < trained.blocks.map(\.mlpHidden).reduce(0, +))

        let evaluation = folder.path("eval.json")
        let eval = try vitforge(["eval", "--model", pruned, "--data", data, "--json", evaluation, "--device", "cpu"])
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(eval.stdout.contains(data + "/val"), "\(eval.stdout)")
        let report = try jsonObject(evaluation)
        #expect(report["images"] as? Int == 9)
        #expect(report["classes"] as? [Int] == [0, 1, 2] && report["class_names"] as? [String] == Self.classes)
        let confusion = try #require(report["confusion"] as? [[Int]])
        #expect(confusion.map { $0.reduce(0, +) } == [3, 3, 3])
        let correct = (0 ..< 3).map { confusion[$0][$0] }.reduce(0, +)
        #expect(report["correct"] as? Int == correct)

        let files = [data + "/val/sneaker/0.png", data + "/val/bag/1.png", data + "/val/dress/2.jpg"]
        let predictions = folder.path("predictions.json")
        let predict = try vitforge(["predict", "--model", pruned] + files
                                   + ["--top", "2", "--json", predictions, "--device", "cpu"])
        #expect(predict.status == 0, "\(predict.stderr)")
        // One line per file after the device line every command prints once.
        #expect(predict.stdout.split(separator: "\n").filter { !$0.hasPrefix("device: ") }.count == 3, "\(predict.stdout)")
        let entries = try #require(try jsonObject(predictions)["predictions"] as? [[String: Any]])
        #expect(entries.map { $0["file"] as? String } == files)
        for entry in entries {
            let top = try #require(entry["top"] as? [[String: Any]])
            #expect(top.count == 2)
            let probabilities = top.compactMap { $0["probability"] as? Double }
            #expect(probabilities.count == 2 && probabilities[0] >= probabilities[1] && probabilities.reduce(0, +) <= 1 + 1e-9)
            for candidate in top {
                let index = try #require(candidate["index"] as? Int)
                #expect(candidate["class"] as? String == Self.classes[index])
            }
        }
        // An input is never overwritten.
        let overwrite = try vitforge(["predict", "--model", pruned, files[0], "--json", files[0], "--device", "cpu"])
        #expect(overwrite.status != 0 && overwrite.stderr.contains(files[0]))

        let onnx = folder.path("pruned.onnx")
        let export = try vitforge(["export", "--model", pruned, "--out", onnx])
        #expect(export.status == 0, "\(export.stderr)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: onnx))
        for text in ["vitforge.class_names", #"["bag","dress","sneaker"]"#, "vitforge.preprocessing", "input_size"] {
            #expect(bytes.range(of: Data(text.utf8)) != nil, "\(text) missing from the ONNX metadata")
        }
    }

    @Test("Class checks: a folder class the model does not know is one error line; a subset is scored as one")
    func classChecks() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.photos(folder)
        let tuned = folder.path("tuned.safetensors")
        let train = try Self.train(Self.fashionModel, data: data, out: tuned)
        #expect(train.status == 0, "\(train.stderr)")

        let unknown = folder.path("unknown")
        try ImageFolderMaker.make(unknown, classes: ["bag", "hat"], perClass: ["": 2])
        let refused = try vitforge(["eval", "--model", tuned, "--data", unknown, "--device", "cpu"])
        #expect(refused.status != 0)
        #expect(refused.stderrLines.count == 1 && refused.stderr.contains(unknown + "/hat")
                && refused.stderr.contains("bag, dress, sneaker"), "\(refused.stderr)")

        // bag and sneaker only, in a folder without splits: the model holds no split for it, so all, with a warning.
        let subset = folder.path("subset")
        try ImageFolderMaker.make(subset, classes: ["bag", "sneaker"], perClass: ["": 2])
        let evaluation = folder.path("subset.json")
        let scored = try vitforge(["eval", "--model", tuned, "--data", subset, "--json", evaluation, "--device", "cpu"])
        #expect(scored.status == 0, "\(scored.stderr)")
        #expect(scored.stdout.contains("2 of the model's 3 classes"), "\(scored.stdout)")
        #expect(scored.stderr.contains("may include its training images"), "\(scored.stderr)")
        let report = try jsonObject(evaluation)
        #expect(report["images"] as? Int == 4)
        #expect((report["per_class"] as? [String: Double]).map { Set($0.keys) } == ["0", "2"])
        // Predictions still range over all three classes: each row of the confusion has three columns.
        #expect((report["confusion"] as? [[Int]])?.allSatisfy { $0.count == 3 } == true)
        #expect(!scored.stderr.contains("label k is scored as output k"), "\(scored.stderr)")

        // The plain 10-class file names no classes: the folder's 3 are scored as outputs 0-2, with one warning line.
        let unnamed = try vitforge(["eval"] + ["--model", fixture("fm-vit-c.safetensors"), "--heads", "2"]
                                   + ["--data", subset, "--device", "cpu"])
        #expect(unnamed.status == 0, "\(unnamed.stderr)")
        let warnings = unnamed.stderrLines.filter { $0.contains("label k is scored as output k") }
        #expect(warnings.count == 1 && warnings[0].hasPrefix("warning: ") && warnings[0].contains("10 outputs"),
                "\(unnamed.stderr)")
    }

    @Test("train --arch builds for the folder's classes and 3 channels; predict without names prints indices; a file that is not an image is one line naming it")
    func archAndPredictEdges() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.photos(folder)
        let built = folder.path("built.safetensors")
        let train = try Self.train(["--arch", "fm-vit-c"], data: data, out: built)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("fm-vit-c for \(data): 3×28×28 input, 3 classes (bag, dress, sneaker)"),
                "\(train.stdout)")
        let config = try ViTWeights.load(path: built).config
        #expect(config.inChannels == 3 && config.classes == 3 && config.classNames == Self.classes)

        let image = data + "/val/bag/0.png"
        let predictions = folder.path("unnamed.json")
        let unnamed = try vitforge(["predict", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2", image,
                                    "--top", "3", "--json", predictions, "--device", "cpu"])
        #expect(unnamed.status == 0, "\(unnamed.stderr)")
        let entries = try #require(try jsonObject(predictions)["predictions"] as? [[String: Any]])
        let top = try #require(entries.first?["top"] as? [[String: Any]])
        #expect(top.count == 3 && top.allSatisfy { $0["class"] as? String == ($0["index"] as? Int).map(String.init) })

        let notImage = folder.path("notes.png")
        try Data("not a picture".utf8).write(to: URL(fileURLWithPath: notImage))
        let refused = try vitforge(["predict", "--model", built, image, notImage, "--device", "cpu"])
        #expect(refused.status != 0 && refused.stderrLines.count == 1 && refused.stderr.contains(notImage),
                "\(refused.stderr)")
    }

    @Test("train --val-fraction stores the held-out split; eval --split auto on a folder without splits scores it")
    func heldOutSplit() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = folder.path("flat")
        try ImageFolderMaker.make(data, classes: Self.classes, perClass: ["": 5])
        let tuned = folder.path("tuned.safetensors")
        let train = try Self.train(Self.fashionModel, data: data, out: tuned, ["--val-fraction", "0.4", "--seed", "3"])
        #expect(train.status == 0, "\(train.stderr)")
        #expect(try ViTWeights.load(path: tuned).config.heldOut == HeldOutSplit(fraction: 0.4, seed: 3))
        let evaluation = folder.path("eval.json")
        let eval = try vitforge(["eval", "--model", tuned, "--data", data, "--json", evaluation, "--device", "cpu"])
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(eval.stdout.contains("held out in training"), "\(eval.stdout)")
        #expect(!eval.stderr.contains("training images"))
        #expect(try jsonObject(evaluation)["images"] as? Int == 6)  // 2 of each class's 5
        let whole = try vitforge(["eval", "--model", tuned, "--data", data, "--split", "train", "--device", "cpu"])
        #expect(whole.status == 0 && whole.stdout.contains("/15 correct"), "\(whole.stdout)")
    }

    @Test("Hugging Face id2label names: a folder of some of them keeps the head; placeholders LABEL_k name nothing")
    func huggingFaceNames() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"]
        let hf = folder.path("hf")
        try FileManager.default.createDirectory(atPath: hf, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture("hf-vit-c/model.safetensors"), toPath: hf + "/model.safetensors")
        var config = try jsonObject(fixture("hf-vit-c/config.json"))
        config["id2label"] = Dictionary(uniqueKeysWithValues: names.enumerated().map { (String($0.offset), $0.element) })
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: hf + "/config.json"))
        #expect(try ViTWeights.load(path: hf + "/model.safetensors").config.classNames == names)
        #expect(try ViTWeights.load(path: fixture("hf-vit-c/model.safetensors")).config.classNames == nil)

        // Folder names in another case are the same classes; the 10-way head stays.
        let data = folder.path("shoes")
        try ImageFolderMaker.make(data, classes: ["bag", "sneaker"], perClass: ["train": 3, "val": 2])
        let tuned = folder.path("tuned.safetensors")
        let train = try Self.train(["--init", hf + "/model.safetensors"], data: data, out: tuned)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(!train.stdout.contains("new "), "\(train.stdout)")
        #expect(try ViTWeights.load(path: tuned).config.classNames == names)
        let evaluation = folder.path("eval.json")
        let eval = try vitforge(["eval", "--model", tuned, "--data", data, "--json", evaluation, "--device", "cpu"])
        #expect(eval.status == 0, "\(eval.stderr)")
        let report = try jsonObject(evaluation)
        #expect((report["per_class"] as? [String: Double]).map { Set($0.keys) } == ["7", "8"])
    }

    @Test("DeiT-Tiny (1000 classes) → 3 named classes in two steps at batch 8, then eval and export",
          .enabled(if: deitTinyPresent, "../shared/fixtures/deit_tiny_patch16_224.safetensors not found"))
    func deitTinyJourney() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = folder.path("photos")
        try ImageFolderMaker.make(data, classes: Self.classes, perClass: ["train": 5, "val": 1])
        let tuned = folder.path("tuned.safetensors")
        let train = try Self.train(["--init", Self.deitTinyPath], data: data, out: tuned)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("new 3-way head for bag, dress, sneaker; the 1000-way head is dropped"),
                "\(train.stdout)")
        let weights = try ViTWeights.load(path: tuned)
        #expect(weights.config.classes == 3 && weights.config.classNames == Self.classes)
        #expect(weights["head.weight"]?.shape == [3, 192] && weights["head.bias"]?.values.count == 3)
        let eval = try vitforge(["eval", "--model", tuned, "--data", data, "--device", "cpu"])
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(eval.stdout.contains("/3 correct"), "\(eval.stdout)")
        let onnx = folder.path("tuned.onnx")
        let export = try vitforge(["export", "--model", tuned, "--out", onnx])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: onnx)).range(of: Data(#"["bag","dress","sneaker"]"#.utf8)) != nil)
    }
}
