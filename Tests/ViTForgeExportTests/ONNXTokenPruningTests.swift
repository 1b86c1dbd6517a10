import Foundation
import Testing
@testable import ViTForgeExport
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport

extension ONNXExportTests {
    /// A token-pruned model (random monotone sets, the last blocks keeping only the prefix tokens under token
    /// pooling) exports Gather nodes; the graph in float64 equals the reference with dropped tokens masked as keys
    /// and values, and the sets survive in the graph's config metadata.
    @Test("Token-pruned graph: Gather nodes, equals the masked float64 reference, sets kept in the metadata",
          arguments: 0..<3)
    func tokenPrunedGraph(variant: Int) throws {
        let (pooling, distilled) = Self.variants[variant]
        var config = irregularConfig(pooling: pooling, distilled: distilled)
        var generator = SeededGenerator(seed: 0x0770 + UInt64(variant))
        var current = Array(0..<config.tokens)
        config.tokenSets = (0..<config.depth).map { block in
            if pooling == .token && block == config.depth - 1 {
                current = Array(0..<config.prefixTokens)
            } else {
                let next = current.filter { $0 < config.prefixTokens || generator.below(10) >= 4 }
                current = next.count > config.prefixTokens ? next : Array(current.prefix(config.prefixTokens + 1))
            }
            return current
        }
        let weights = try randomWeights(config, seed: 50 + UInt64(variant))
        let data = try ONNXExport.modelData(weights, producerVersion: "test")
        let model = try Onnx_ModelProto(serializedBytes: data)
        #expect(model.graph.node.contains { $0.opType == "Gather" && $0.name.hasSuffix(".tokens") })
        let stored = model.metadataProps.first { $0.key == ViTConfig.metadataKey }?.value ?? ""
        #expect(try ViTConfig.fromJSON(stored, file: "graph").tokenSets == config.tokenSets)
        let evaluator = try ONNXEvaluator(data)
        var doubles: [String: [Double]] = [:]
        for spec in config.parameterSpecs() { doubles[spec.name] = weights[spec.name]?.values.map(Double.init) }
        var reference = ReferenceViT(config: config, parameters: doubles)
        reference.tokenSets = config.tokenSets
        let batch = 2
        let pixels = (0..<(batch * config.inChannels * config.imageSize * config.imageSize)).map { _ in
            generator.uniform()
        }
        let got = try evaluator.run(.init(shape: [batch, config.inChannels, config.imageSize, config.imageSize],
                                          data: pixels))
        let want = reference.logits(pixels, batch: batch).flatMap { $0 }
        let error = zip(got.data, want).map { abs($0 - $1) }.max() ?? .infinity
        #expect(error < 1e-6, "variant \(variant): max |graph − masked reference| \(error)")
    }
}
