import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel

/// Absurd widths in `vitforge.config`: every one within its own limit, multiplying into more parameters than a
/// machine holds. A one-line error, before anything is allocated.
struct ConfigLimitTests {
    @Test("1024 blocks of the widest MLP: refused by parameter count, through fromJSON and a model file's metadata")
    func tooManyParameters() throws {
        let wide = BlockConfig(heads: 1, qkDim: 1, vDim: 1, mlpHidden: ViTConfig.maximumWidth * 4)
        let config = ViTConfig(imageSize: 4, patchSize: 2, inChannels: 1, classes: 2,
                               residualWidth: ViTConfig.maximumWidth,
                               blocks: Array(repeating: wide, count: ViTConfig.maximumDepth),
                               qkvBias: true, pooling: .token, classToken: true)
        let expected = "\(config.parameterCount) parameters: above ViTForge's limit of \(ViTConfig.maximumParameters)"
        #expect(config.problem() == expected)
        #expect(config.parameterCount > 1 << 44)
        #expect {
            _ = try ViTConfig.fromJSON(config.jsonString(), file: "absurd.json")
        } throws: { error in
            "\(error)".contains(expected) && !"\(error)".contains("\n")
        }
        // The same config as a model file's metadata, over no tensors.
        let header = "{\"__metadata__\":{\"vitforge.config\":" + jsonStringLiteral(config.jsonString()) + "}}"
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8)
        #expect {
            _ = try ViTWeights(file: SafetensorsFile(bytes: Data(bytes), path: "absurd.safetensors"))
        } throws: { error in
            "\(error)".hasPrefix("absurd.safetensors") && "\(error)".contains(expected)
        }
    }

    @Test("ViT-G/14 sized configs stay allowed")
    func largeRealModel() {
        let config = ViTConfig.timm(imageSize: 224, patchSize: 14, inChannels: 3, classes: 1000, embedDim: 1664,
                                    depth: 48, heads: 16, mlpRatio: 8192.0 / 1664, qkvBias: true, pooling: .token)
        #expect(config.problem() == nil)
        #expect(config.parameterCount > 1_800_000_000)
    }
}
