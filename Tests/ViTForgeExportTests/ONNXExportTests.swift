import Foundation
import Testing
@testable import ViTForgeExport
import ViTForgeModel
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
}
