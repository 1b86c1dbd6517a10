import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// `infer`, `grad`, `info` and `eval` on the timm fixtures, through the real binary, against PyTorch's numbers.
@Suite(.serialized)
struct FixtureCommandTests {
    static let models = ["fm-vit-b", "fm-vit-c"]
    /// Heads are not in a plain timm file's shapes; the fixture facts say fm-vit-b has 4, fm-vit-c 2.
    static let heads = ["fm-vit-b": 4, "fm-vit-c": 2]

    @Test("infer reproduces PyTorch's logits within 1e-4 (batch 5, so the last batch is partial)", arguments: models)
    func inferMatchesPyTorch(model: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let out = folder.path("logits.safetensors")
        let result = try vitforge(["infer", "--model", fixture(model + ".safetensors"), "--heads",
                                   String(Self.heads[model] ?? 0), "--input", fixture(model + "-ref.safetensors"),
                                   "--out", out, "--batch-size", "5", "--device", "cpu"])
        #expect(result.status == 0, "\(result.stderr)")
        let reference = try SafetensorsFile(path: fixture(model + "-ref.safetensors"))
        let written = try SafetensorsFile(path: out)
        #expect(try written.shape("logits") == reference.shape("logits"))
        #expect(written.entry("logits")?.dtype == .f32)
        let error = maxAbsoluteError(try written.floats("logits"), try reference.floats("logits"))
        #expect(error < 1e-4, "\(model): max |logit error| \(error)")
    }

    @Test("grad reproduces PyTorch's loss within 1e-5 and every gradient within 1e-3 relative", arguments: models)
    func gradMatchesPyTorch(model: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let out = folder.path("grad.safetensors")
        let result = try vitforge(["grad", "--model", fixture(model + ".safetensors"), "--heads",
                                   String(Self.heads[model] ?? 0), "--input", fixture(model + "-ref.safetensors"),
                                   "--out", out, "--device", "cpu"])
        #expect(result.status == 0, "\(result.stderr)")
        let reference = try SafetensorsFile(path: fixture(model + "-ref.safetensors"))
        let written = try SafetensorsFile(path: out)
        let loss = try written.floats("loss")
        #expect(loss.count == 1)
        #expect(maxAbsoluteError(loss, try reference.floats("loss")) < 1e-5, "\(model): loss \(loss)")
        let gradientNames = reference.names.filter { $0.hasPrefix("grad.") }
        #expect(!gradientNames.isEmpty)
        #expect(Set(written.names) == Set(gradientNames + ["loss"]))
        for name in gradientNames {
            #expect(try written.shape(name) == reference.shape(name))
            let error = relativeError(try written.floats(name), try reference.floats(name))
            #expect(error < 1e-3, "\(model): \(name) relative error \(error)")
        }
    }

    @Test("info prints the fixture's parameter count, MACs and where heads came from", arguments: models)
    func infoPrintsParameterCount(model: String) throws {
        let derived = try facts(model)["derived"] as? [String: Any]
        let parameters = try #require(derived?["num_params"] as? Int)
        let result = try vitforge(["info", fixture(model + ".safetensors"), "--heads", String(Self.heads[model] ?? 0)])
        #expect(result.status == 0, "\(result.stderr)")
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("parameters:") }
        #expect(line?.split(separator: " ").last.map(String.init) == String(parameters), "\(result.stdout)")
        #expect(result.stdout.contains("heads from:     --heads"))
        #expect(result.stdout.contains("MACs per image:"))
        #expect(result.stdout.contains("total"))
    }

    /// Two classes (2000 images): the whole test split takes more than 20 s in a debug build.
    @Test("eval --classes 5,7 on fm-vit-c matches the fixture's per-class test accuracy; --json has the keys")
    func evalMatchesFixtureAccuracy() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let json = folder.path("report.json")
        let result = try vitforge(["eval", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2",
                                   "--data", "fashion-mnist", "--classes", "5,7", "--json", json,
                                   "--batch-size", "250", "--device", "cpu"])
        #expect(result.status == 0, "\(result.stderr)")
        let perClassFacts = try #require(try facts("fm-vit-c")["test_accuracy_per_class"] as? [String: Double])
        let expected = [5: try #require(perClassFacts["Sandal"]), 7: try #require(perClassFacts["Sneaker"])]

        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
            as? [String: Any])
        #expect(report["images"] as? Int == 2000)
        let perClass = try #require(report["per_class"] as? [String: Double])
        #expect(Set(perClass.keys) == ["5", "7"])
        for (label, accuracy) in expected {
            let got = try #require(perClass[String(label)])
            // timm's float32 eval against ours: an image or two near a tie may flip.
            #expect(abs(got - accuracy) <= 0.003, "class \(label): \(got) vs fixture \(accuracy)")
        }
        let accuracy = try #require(report["accuracy"] as? Double)
        #expect(abs(accuracy - (expected.values.reduce(0, +) / 2)) <= 0.003)
        #expect(report["model"] as? String == fixture("fm-vit-c.safetensors"))
        #expect((report["device"] as? String)?.hasPrefix("cpu") == true)
        #expect(report["seconds"] is Double)
        #expect(result.stdout.contains("Sandal"))
    }
}
