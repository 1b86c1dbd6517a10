import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics

/// The timm-made fixtures load, and what is inferred from their shapes matches the facts timm recorded.
struct FixtureTests {
    @Test(arguments: ["fm-vit-b", "fm-vit-c"])
    func configMatchesFacts(model: String) throws {
        let facts = try facts(model)
        let kwargs = try #require(facts["timm_kwargs"] as? [String: Any])
        let derived = try #require(facts["derived"] as? [String: Any])
        let heads = try #require(kwargs["num_heads"] as? Int)

        let weights = try ViTWeights.load(path: fixture(model + ".safetensors"), heads: heads)
        let config = weights.config
        #expect(weights.headsSource == .argument)
        #expect(config.imageSize == kwargs["img_size"] as? Int)
        #expect(config.inChannels == kwargs["in_chans"] as? Int)
        #expect(config.classes == kwargs["num_classes"] as? Int)
        #expect(config.patchSize == kwargs["patch_size"] as? Int)
        #expect(config.residualWidth == kwargs["embed_dim"] as? Int)
        #expect(config.depth == kwargs["depth"] as? Int)
        #expect(config.qkvBias == kwargs["qkv_bias"] as? Bool)
        #expect(config.classToken == kwargs["class_token"] as? Bool)
        #expect(config.pooling.rawValue == kwargs["global_pool"] as? String)
        #expect(config.distillationToken == false)
        #expect(config.finalNormName == derived["final_norm_key"] as? String)
        #expect(config.layerNormEps == derived["layernorm_eps"] as? Double)
        #expect(config.patchCount == derived["num_patches"] as? Int)
        #expect(config.tokens == derived["num_tokens"] as? Int)
        let headDim = try #require(derived["head_dim"] as? Int)
        for block in config.blocks {
            #expect(block == BlockConfig(heads: heads, qkDim: headDim, vDim: headDim,
                                         mlpHidden: derived["mlp_hidden"] as? Int ?? -1))
            #expect(block.attentionScale == 1 / Double(headDim).squareRoot())
        }
        #expect(config.isPlainTimm)
        #expect(config.parameterCount == derived["num_params"] as? Int)
        #expect(config.cost().parameters == derived["num_params"] as? Int)
        // The key list is timm's, in timm's state-dict order.
        #expect(config.parameterSpecs().map(\.name) == facts["state_dict_keys"] as? [String])
    }

    @Test(arguments: ["fm-vit-b", "fm-vit-c"])
    func referenceTensorsMatchTheModel(model: String) throws {
        let facts = try facts(model)
        let heads = try #require((facts["timm_kwargs"] as? [String: Any])?["num_heads"] as? Int)
        let reference = try #require((facts["reference"] as? [String: Any])?["loss"] as? Double)
        let config = try ViTWeights.load(path: fixture(model + ".safetensors"), heads: heads).config

        let ref = try SafetensorsFile(path: fixture(model + "-ref.safetensors"))
        #expect(try ref.shape("input") == [16, config.inChannels, config.imageSize, config.imageSize])
        #expect(ref.entry("labels")?.dtype == .i64)
        let labels = try ref.int32s("labels")
        #expect(labels.count == 16 && labels.allSatisfy { (0..<Int32(config.classes)).contains($0) })
        #expect(try ref.shape("logits") == [16, config.classes])
        let loss = try ref.floats("loss")
        #expect(loss.count == 1 && abs(Double(loss[0]) - reference) < 1e-6)
        for spec in config.parameterSpecs() {
            #expect(try ref.shape("grad." + spec.name) == spec.shape, "grad.\(spec.name)")
        }
        for (index, block) in config.blocks.enumerated() {
            #expect(try ref.shape("features.block\(index).mlp_hidden_var") == [block.mlpHidden])
        }

        let adamw = try SafetensorsFile(path: fixture(model + "-adamw.safetensors"))
        let losses = try adamw.floats("losses")
        #expect(losses.count == 10 && abs(Double(losses[0]) - reference) < 1e-5)
        #expect(adamw.metadata["adamw"] != nil)
        let specs = Dictionary(uniqueKeysWithValues: config.parameterSpecs().map { ($0.name, $0.shape) })
        let after = adamw.names.filter { $0.hasPrefix("after10.") }
        #expect(after.count == 3)
        for name in after {
            #expect(try adamw.shape(name) == specs[String(name.dropFirst("after10.".count))], "\(name)")
        }
    }

    @Test func fixtureValuesAreTheFilesBytes() throws {
        // Spot-check against numbers printed by numpy from the same file.
        let file = try SafetensorsFile(path: fixture("fm-vit-c.safetensors"))
        let weights = try ViTWeights(file: file, heads: 2)
        let bias = try #require(weights["head.bias"])
        #expect(bias.shape == [10])
        #expect(Array(bias.values.prefix(3)) == [0.011543122, -0.0031427226, -0.003934574])
        let fc1 = try #require(weights["blocks.3.mlp.fc1.weight"])  // [384, 96], row-major
        #expect(fc1.values[1] == -0.013303085)
        #expect(fc1.values[383 * 96 + 95] == 0.031006705)
        #expect(file.metadata["format"] == "pt")
    }

    @Test func headsAreRequiredWhenShapesCannotTellThem() throws {
        let error = modelFileError { _ = try ViTWeights.load(path: fixture("fm-vit-b.safetensors")) }
        #expect(error?.reason == .headsUnknown(embedDim: 128))
        #expect(error?.description.contains("pass --heads") == true)
        // A head count that does not divide the qkv rows is refused rather than mis-split.
        let wrong = modelFileError { _ = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 5) }
        #expect(wrong?.key == "blocks.0.attn.qkv.weight")
    }

    @Test(.enabled(if: deitTinyPresent,
                   "DeiT-Tiny fixtures are not at ../shared/fixtures (they stay outside the repository)"))
    func deitTinyAtItsRealSize() throws {
        let weights = try ViTWeights.load(path: deitTinyPath)
        let config = weights.config
        #expect(weights.headsSource == .knownWidth)
        #expect(config == ViTConfig.timm(imageSize: 224, patchSize: 16, inChannels: 3, classes: 1000,
                                         embedDim: 192, depth: 12, heads: 3))
        let factsData = try Data(contentsOf: sharedFixturesFolder.appendingPathComponent("deit_tiny_patch16_224.json"))
        let facts = try #require(try JSONSerialization.jsonObject(with: factsData) as? [String: Any])
        #expect(config.parameterCount == facts["num_params"] as? Int)
        #expect(config.cost().macs == 1_253_683_200)

        let ref = try SafetensorsFile(path: sharedFixturesFolder
            .appendingPathComponent("deit_tiny_patch16_224-ref.safetensors").path)
        #expect(try ref.shape("input") == [2, 3, 224, 224])
        for spec in config.parameterSpecs() {
            #expect(try ref.shape("grad." + spec.name) == spec.shape, "grad.\(spec.name)")
        }
    }
}
