import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics

/// Heads of different widths in the configuration and the file format: round trip, files written before per-head
/// widths, uniform heads stored as before, refused inconsistencies.
struct PerHeadWidthTests {
    static func config() -> ViTConfig {
        ViTConfig(imageSize: 9, patchSize: 3, inChannels: 2, classes: 5, residualWidth: 13, blocks: [
            BlockConfig(qkDims: [3, 1, 4], vDims: [2, 5, 1], mlpHidden: 6, attentionScale: 0.45),
            BlockConfig(heads: 2, qkDim: 3, vDim: 5, mlpHidden: 11, attentionScale: 0.37),
            BlockConfig(qkDims: [], vDims: [], mlpHidden: 4, attentionScale: 0.3),
        ])
    }

    @Test("a model with heads of different widths round-trips through safetensors, shapes from the per-head widths")
    func roundTrip() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let config = Self.config()
        #expect(config.problem() == nil)
        #expect(config.blocks[0].qkvRows == 2 * 8 + 8 && config.blocks[0].attentionWidth == 8)
        #expect(config.blocks[0].qkDim == 4 && config.blocks[0].vDim == 5 && !config.blocks[0].hasUniformHeads)
        var values = SeededValues(seed: 3)
        let weights = try ViTWeights(config: config, tensors: values.tensors(for: config))
        let path = folder.path("uneven.safetensors")
        try weights.save(to: path)
        let read = try ViTWeights.load(path: path)
        #expect(read == weights)
        #expect(read.config.blocks[0].qkDims == [3, 1, 4] && read.config.blocks[0].vDims == [2, 5, 1])
        let file = try SafetensorsFile(path: path)
        #expect(try file.shape("blocks.0.attn.qkv.weight") == [24, 13])
        #expect(try file.shape("blocks.0.attn.proj.weight") == [13, 8])
        // A block without heads stores empty qkv and proj weights (and its proj bias).
        #expect(try file.shape("blocks.2.attn.qkv.weight") == [0, 13])
        #expect(try file.shape("blocks.2.attn.proj.weight") == [13, 0])
        #expect(read.config.blocks[2].heads == 0 && read.config.cost().blocks[2].attentionScores == 0)
        // Attention MACs follow each head's widths: q·kᵀ over Σ qk dims, p·v over Σ v dims.
        let tokens = config.tokens
        #expect(config.cost().blocks[0].attentionScores == tokens * tokens * 8)
        #expect(config.cost().blocks[0].attentionValues == tokens * tokens * 8)
    }

    @Test("uniform heads are stored without per-head keys, as before, and a config written before them loads")
    func oldFormat() throws {
        let uniform = BlockConfig(qkDims: [4, 4], vDims: [6, 6], mlpHidden: 9, attentionScale: 0.5)
        #expect(uniform.hasUniformHeads && uniform.qkDim == 4 && uniform.vDim == 6 && uniform.heads == 2)
        let json = ViTConfig(imageSize: 9, patchSize: 3, inChannels: 1, classes: 3, residualWidth: 7,
                             blocks: [uniform]).jsonString()
        #expect(!json.contains("headQKDims") && !json.contains("headVDims"))
        let old = """
            {"blocks":[{"attentionScale":0.5,"heads":2,"mlpHidden":9,"qkDim":4,"vDim":6}],"classToken":true,\
            "classes":3,"imageSize":9,"inChannels":1,"patchSize":3,"pooling":"token","qkvBias":true,"residualWidth":7}
            """
        let config = try ViTConfig.fromJSON(old, file: "old.safetensors")
        #expect(config.blocks[0] == uniform)
        #expect(config.blocks[0].qkDims == [4, 4])
    }

    @Test("per-head widths that contradict the head count or the widest head are refused")
    func inconsistent() throws {
        var block = BlockConfig(qkDims: [3, 1, 4], vDims: [2, 5, 1], mlpHidden: 6, attentionScale: 0.45)
        block.headVDims = [2, 5]
        var config = Self.config()
        config.blocks[0] = block
        #expect(config.problem()?.contains("every one of its 3 heads") == true)
        block.headVDims = [2, 5, 1]
        block.qkDim = 9
        config.blocks[0] = block
        #expect(config.problem()?.contains("widest") == true)
        block.qkDim = 4
        block.headQKDims = [3, 0, 4]
        config.blocks[0] = block
        #expect(config.problem()?.contains("at least one") == true)
    }
}
