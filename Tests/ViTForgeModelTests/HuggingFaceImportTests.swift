import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics

/// `Tests/Fixtures/hf-vit-c` is fm-vit-c written by transformers' `save_pretrained` (Tests/Fixtures/tools/
/// make_hf_fixture.py checked transformers' logits against timm's before writing it). Read through the key-layout
/// detection, it must be fm-vit-c bit for bit; the CI check compares `vitforge infer` on it with timm's logits.
struct HuggingFaceImportTests {
    let hfPath = fixture("hf-vit-c/model.safetensors")

    @Test("HF-layout fm-vit-c reads as the timm fixture, bit for bit")
    func readsAsTimm() throws {
        let hf = try ViTWeights.load(path: hfPath)
        let timm = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        #expect(hf.headsSource == .huggingFaceConfig)
        #expect(hf.config == timm.config)
        #expect(hf == timm)
    }

    @Test("Saving an HF-layout model writes timm names and the full configuration")
    func savesTimmNames() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let out = folder.path("converted.safetensors")
        let hf = try ViTWeights.load(path: hfPath)
        try hf.save(to: out)
        let file = try SafetensorsFile(path: out)
        #expect(file.names.allSatisfy { !$0.hasPrefix("vit.") && !$0.hasPrefix("classifier") })
        #expect(file.metadata[ViTConfig.metadataKey] != nil)
        #expect(try ViTWeights.load(path: out) == hf)
    }

    /// A copy of the fixture in a fresh folder, with `config.json` edited by `edit` (nil: no config.json).
    func copy(in folder: TemporaryFolder, config edit: ((inout [String: Any]) -> Void)?) throws -> String {
        let model = folder.path("model.safetensors")
        try FileManager.default.copyItem(atPath: hfPath, toPath: model)
        if let edit {
            let data = try Data(contentsOf: URL(fileURLWithPath: fixture("hf-vit-c/config.json")))
            var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            edit(&object)
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: folder.path("config.json")))
        }
        return model
    }

    @Test("HF layout without config.json, with a wrong head count or activation: one line naming the file")
    func badConfig() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let missing = try copy(in: folder, config: nil)
        let noConfig = modelFileError { _ = try ViTWeights.load(path: missing) }
        #expect(noConfig?.file == missing)
        #expect(noConfig?.description.contains("config.json") == true)

        let other = try TemporaryFolder()
        defer { other.remove() }
        let threeHeads = try copy(in: other, config: { $0["num_attention_heads"] = 5 })
        let split = modelFileError { _ = try ViTWeights.load(path: threeHeads) }
        #expect(split?.key == "vit.encoder.layer.0.attention.attention.query.weight")
        #expect(modelFileError { _ = try ViTWeights.load(path: threeHeads, heads: 2) }?.description
            .contains("contradicts") == true)

        let third = try TemporaryFolder()
        defer { third.remove() }
        let tanh = try copy(in: third, config: { $0["hidden_act"] = "gelu_new" })
        let activation = modelFileError { _ = try ViTWeights.load(path: tanh) }
        #expect(activation?.reason == .unsupportedVariant("hidden_act \"gelu_new\" (only exact \"gelu\")"))
    }

    @Test("HF eps comes from config.json (HF's default 1e-12 when absent)")
    func epsFromConfig() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = try copy(in: folder, config: { $0.removeValue(forKey: "layer_norm_eps") })
        #expect(try ViTWeights.load(path: model).config.layerNormEps == 1e-12)
    }

    @Test("Key names map back to the HF key they came from, for errors")
    func hfNames() {
        #expect(HuggingFaceViT.hfName(of: "blocks.3.mlp.fc1.weight") == "vit.encoder.layer.3.intermediate.dense.weight")
        #expect(HuggingFaceViT.hfName(of: "blocks.0.norm2.bias") == "vit.encoder.layer.0.layernorm_after.bias")
        #expect(HuggingFaceViT.hfName(of: "head.bias") == "classifier.bias")
    }
}
