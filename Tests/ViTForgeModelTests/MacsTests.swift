import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics

struct MacsTests {
    /// Totals worked out by hand from the formula in `Macs.swift` (T tokens, D width, per block
    /// T·D·H(2qk+v) + H·T²·qk + H·T²·v + T·Hv·D + 2·T·D·M, plus patches·C·P²·D and D·classes).
    @Test func fixtureTotals() throws {
        let b = try ViTWeights.load(path: fixture("fm-vit-b.safetensors"), heads: 4).config.cost()
        #expect(b.macs == 9_310_464)
        #expect(b.blocks[0].macs == 2_302_208)
        #expect(b.parameters == 538_634)
        let c = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2).config.cost()
        #expect(c.macs == 24_114_624)
        #expect(c.blocks[0].macs == 6_009_600)
        #expect(c.blocks[0].parameters == 111_840)
        #expect(c.parameters == 455_050)
    }

    @Test func prunedBlocksUseTheirOwnWidths() {
        let config = prunedConfig()
        let cost = config.cost()
        // T = 9 patches + cls = 10, D = 13. Block 0: H 3, qk 5, v 7, M 37.
        let block0 = cost.blocks[0]
        #expect(block0.qkv == 10 * 13 * 3 * (5 + 5 + 7))
        #expect(block0.attentionScores == 3 * 10 * 10 * 5)
        #expect(block0.attentionValues == 3 * 10 * 10 * 7)
        #expect(block0.proj == 10 * 21 * 13)
        #expect(block0.fc1 == 10 * 13 * 37)
        #expect(block0.fc2 == 10 * 37 * 13)
        // Block 1: H 1, qk 4, v 2.
        #expect(cost.blocks[1].attentionScores == 100 * 4)
        #expect(cost.blocks[1].attentionValues == 100 * 2)
        #expect(cost.patchEmbedMacs == 9 * 2 * 25 * 13)
        #expect(cost.headMacs == 13 * 7)
        #expect(cost.parameters == config.parameterCount)
        #expect(prunedConfig(distilled: true).cost().parameters == prunedConfig(distilled: true).parameterCount)
        #expect(prunedConfig(distilled: true).cost().headMacs == 2 * 13 * 7)
        let table = cost.table(config: config)
        #expect(table.split(separator: "\n").count == 3 + 4)
    }
}
