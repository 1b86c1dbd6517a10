import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport

/// Class names stored with a model: matching a data set's classes to them, a new head in place of the old one,
/// and the names an HF `config.json` gives.
struct ClassNamesTests {
    static func config(classes: Int, distilled: Bool) -> ViTConfig {
        ViTConfig(imageSize: 9, patchSize: 3, inChannels: 3, classes: classes, residualWidth: 11,
                  blocks: [BlockConfig(heads: 1, qkDim: 5, vDim: 5, mlpHidden: 7)], distillationToken: distilled)
    }

    @Test("Data classes meet model names: exactly, case aside when unique, unknown names listed, none without names")
    func correspondence() {
        var config = Self.config(classes: 4, distilled: false)
        #expect(config.correspondence(ofDataClasses: ["a"]) == .unnamed)
        config.classNames = ["Bag", "dress", "Sneaker", "sneaker"]
        #expect(config.correspondence(ofDataClasses: ["dress", "bag"]) == .known(modelClasses: [1, 0]))
        // "sneaker" is exact; "SNEAKER" matches two names ignoring case, so it matches none.
        #expect(config.correspondence(ofDataClasses: ["sneaker", "SNEAKER", "hat"]) == .unknown(["SNEAKER", "hat"]))
        // A trimmed head: names map to the data-set class ids its outputs predict.
        config.classIds = [9, 2, 5, 7]
        #expect(config.correspondence(ofDataClasses: ["Sneaker", "Bag"]) == .known(modelClasses: [5, 9]))
        #expect(config.classIdCount == 10 && config.namesByClassId[9] == "Bag" && config.namesByClassId[3] == "3")
    }

    @Test("A new head replaces head and head_dist, keeps every other tensor, and is timm-initialised")
    func replacingHead() throws {
        var generator = SeededGenerator(seed: 5)
        var weights = try randomWeights(Self.config(classes: 13, distilled: true), generator: &generator)
        try weights.describe { $0.classIds = Array(100 ..< 113) }
        let names = ["x", "y", "z"]
        let replaced = try weights.replacingHead(classNames: names, seed: 1)
        #expect(replaced.config.classes == 3 && replaced.config.classNames == names && replaced.config.classIds == nil)
        for head in ["head", "head_dist"] {
            let values = try #require(replaced[head + ".weight"]).values
            #expect(replaced[head + ".weight"]?.shape == [3, 11] && replaced[head + ".bias"]?.values == [0, 0, 0])
            // Truncated normal with std 0.02, cut at ±2 std as `ViTWeights.initialized` cuts: small, not constant.
            #expect(values.allSatisfy { abs($0) <= 0.04 } && Set(values).count == values.count)
            let std = (values.map { Double($0 * $0) }.reduce(0, +) / Double(values.count)).squareRoot()
            #expect(std > 0.01 && std < 0.03, "std \(std)")
        }
        #expect(replaced["head.weight"] != replaced["head_dist.weight"])
        for (name, tensor) in weights.tensors where !name.hasPrefix("head") { #expect(replaced[name] == tensor) }
        // Describing a model never changes a parameter's shape.
        #expect(throws: ModelFileError.self) { try weights.describe { $0.classes = 4; $0.classIds = nil } }
    }

    @Test("HF id2label: names in index order; LABEL_k placeholders, gaps and duplicates give none")
    func huggingFaceNames() {
        #expect(HuggingFaceViT.classNames(id2label: ["1": "dog", "0": "cat"]) == ["cat", "dog"])
        #expect(HuggingFaceViT.classNames(id2label: ["0": "LABEL_0", "1": "LABEL_1"]) == nil)
        #expect(HuggingFaceViT.classNames(id2label: ["0": "cat", "2": "dog"]) == nil)
        #expect(HuggingFaceViT.classNames(id2label: ["0": "cat", "1": "cat"]) == nil)
        #expect(HuggingFaceViT.classNames(id2label: nil) == nil)
    }
}
