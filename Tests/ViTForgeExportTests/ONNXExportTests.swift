import Foundation
import Testing
@testable import ViTForgeExport
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport

/// Irregular models: uniform heads with q/k ≠ v, heads of different widths, a block without heads, custom scales,
/// odd sizes; token pooling, average pooling, or DeiT's distillation token.
func irregularConfig(pooling: Pooling, distilled: Bool) -> ViTConfig {
    let blocks = [
        BlockConfig(heads: 3, qkDim: 4, vDim: 5, mlpHidden: 11, attentionScale: 0.37),
        BlockConfig(qkDims: [2, 5, 3], vDims: [3, 1, 6], mlpHidden: 7, attentionScale: 0.61),
        BlockConfig(heads: 0, qkDim: 0, vDim: 0, mlpHidden: 9, attentionScale: 1),
        BlockConfig(heads: 1, qkDim: 3, vDim: 4, mlpHidden: 5),
    ]
    return ViTConfig(imageSize: 9, patchSize: 3, inChannels: 2, classes: 5, residualWidth: 13, blocks: blocks,
                     qkvBias: pooling == .token, pooling: pooling, classToken: true, distillationToken: distilled)
}

func randomWeights(_ config: ViTConfig, seed: UInt64) throws -> ViTWeights {
    var generator = SeededGenerator(seed: seed)
    return try randomWeights(config, generator: &generator)
}

struct ONNXExportTests {
    static let variants: [(Pooling, Bool)] = [(.token, false), (.avg, false), (.token, true)]

    @Test("Exported graph, evaluated in float64, equals the float64 reference ViT", arguments: 0..<3)
    func graphEqualsReference(variant: Int) throws {
        let (pooling, distilled) = Self.variants[variant]
        let config = irregularConfig(pooling: pooling, distilled: distilled)
        let weights = try randomWeights(config, seed: 40 + UInt64(variant))
        let data = try ONNXExport.modelData(weights, producerVersion: "test")
        let evaluator = try ONNXEvaluator(data)
        var doubles: [String: [Double]] = [:]
        for spec in config.parameterSpecs() { doubles[spec.name] = weights[spec.name]?.values.map(Double.init) }
        let reference = ReferenceViT(config: config, parameters: doubles)
        var generator = SeededGenerator(seed: 7)
        for batch in [3, 1] {  // one graph, two batch sizes: the batch is symbolic
            let pixels = (0..<(batch * config.inChannels * config.imageSize * config.imageSize)).map { _ in generator.uniform() }
            let got = try evaluator.run(.init(shape: [batch, config.inChannels, config.imageSize, config.imageSize],
                                              data: pixels))
            #expect(got.shape == [batch, config.classes])
            let want = reference.logits(pixels, batch: batch).flatMap { $0 }
            let error = zip(got.data, want).map { abs($0 - $1) }.max() ?? .infinity
            // The graph's constants are float32 (attention scales, eps, 1/√2: ONNX attributes and this graph's
            // scalars), the reference's float64: ~1e-8 apart on these logits; a wrong slice or scale is ~0.1 off.
            #expect(error < 1e-6, "variant \(variant), batch \(batch): max |graph − reference| \(error)")
        }
    }

    @Test("Model header: opset 17, IR 8, symbolic batch on input and output, config in the metadata")
    func header() throws {
        let weights = try randomWeights(irregularConfig(pooling: .avg, distilled: false), seed: 3)
        let model = try Onnx_ModelProto(serializedBytes: ONNXExport.modelData(weights, producerVersion: "9.9"))
        #expect(model.irVersion == 8 && model.opsetImport.map(\.version) == [17] && model.opsetImport[0].domain == "")
        #expect(model.producerName == "vitforge" && model.producerVersion == "9.9")
        let input = model.graph.input[0].type.tensorType.shape.dim, output = model.graph.output[0].type.tensorType.shape.dim
        #expect(model.graph.input.map(\.name) == ["input"] && model.graph.output.map(\.name) == ["logits"])
        #expect(input.map(\.dimParam) == ["batch", "", "", ""] && input.dropFirst().map(\.dimValue) == [2, 9, 9])
        #expect(output.map(\.dimParam) == ["batch", ""] && output[1].dimValue == 5)
        let config = model.metadataProps.first { $0.key == ViTConfig.metadataKey }?.value
        #expect(try config.map { try ViTConfig.fromJSON($0, file: "onnx") } == weights.config)
        // Every value is produced once, and every node reads only values made before it.
        var defined = Set(model.graph.initializer.map(\.name) + ["input"])
        #expect(defined.count == model.graph.initializer.count + 1)
        for node in model.graph.node {
            #expect(node.input.allSatisfy(defined.contains), "\(node.name) reads an undefined value")
            #expect(defined.insert(node.output[0]).inserted, "\(node.output[0]) produced twice")
        }
    }

    @Test("Metadata for deployers: class names exactly when the model has them; input size and stored preprocessing")
    func deploymentMetadata() throws {
        var weights = try randomWeights(irregularConfig(pooling: .token, distilled: true), seed: 5)
        func metadata() throws -> [String: Any] {
            let model = try Onnx_ModelProto(serializedBytes: ONNXExport.modelData(weights, producerVersion: "9.9"))
            var found: [String: Any] = [:]
            for entry in model.metadataProps where entry.key.hasPrefix("vitforge.") && entry.key != ViTConfig.metadataKey {
                found[entry.key] = try JSONSerialization.jsonObject(with: Data(entry.value.utf8), options: [.fragmentsAllowed])
            }
            return found
        }
        let bare = try metadata()
        #expect(bare["vitforge.class_names"] == nil)
        #expect((bare["vitforge.preprocessing"] as? [String: Any])?.keys.sorted() == ["input_size"])
        #expect((bare["vitforge.preprocessing"] as? [String: Any])?["input_size"] as? [Int] == [2, 9, 9])

        let names = ["ant", "bee", "cat", "dog", "eel"]
        let preprocessing = InputPreprocessing(mean: [0.3, 0.7], std: [0.2, 0.9], interpolation: .bicubic, cropPct: 0.875)
        try weights.describe { $0.classNames = names; $0.preprocessing = preprocessing }
        let described = try metadata()
        #expect(described["vitforge.class_names"] as? [String] == names)
        let stored = try #require(described["vitforge.preprocessing"] as? [String: Any])
        #expect(stored["mean"] as? [Double] == [0.3, 0.7] && stored["std"] as? [Double] == [0.2, 0.9])
        #expect(stored["interpolation"] as? String == "bicubic" && stored["crop_pct"] as? Double == 0.875)
        #expect(stored["input_size"] as? [Int] == [2, 9, 9])
    }
}
