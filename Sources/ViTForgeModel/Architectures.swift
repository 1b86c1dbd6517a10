import ViTForgeFormats
/// Named model shapes for `vitforge train --arch NAME` (from-scratch training), as timm constructs them.
public enum Architectures {
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        public let config: ViTConfig
    }

    public static let all: [Entry] = [
        Entry(name: "fm-vit-c", summary: "Fashion-MNIST ViT: 1×28×28, patch 4, width 96, depth 4, 2 heads, MLP 384, token pooling",
              config: .timm(imageSize: 28, patchSize: 4, inChannels: 1, classes: 10, embedDim: 96, depth: 4,
                            heads: 2, mlpRatio: 4, qkvBias: true, pooling: .token)),
        Entry(name: "fm-vit-b", summary: "Fashion-MNIST ViT: 1×28×28, patch 7, width 128, depth 4, 4 heads, MLP 256, avg pooling",
              config: .timm(imageSize: 28, patchSize: 7, inChannels: 1, classes: 10, embedDim: 128, depth: 4,
                            heads: 4, mlpRatio: 2, qkvBias: false, pooling: .avg)),
        Entry(name: "vit-tiny", summary: "ViT-Ti/16: 3×224×224, width 192, depth 12, 3 heads, 1000 classes",
              config: .timm(imageSize: 224, patchSize: 16, classes: 1000, embedDim: 192, depth: 12, heads: 3)),
        Entry(name: "deit-tiny", summary: "DeiT-Ti distilled: ViT-Ti/16 with a distillation token and head",
              config: .timm(imageSize: 224, patchSize: 16, classes: 1000, embedDim: 192, depth: 12, heads: 3,
                            distillationToken: true)),
        Entry(name: "vit-small", summary: "ViT-S/16: 3×224×224, width 384, depth 12, 6 heads, 1000 classes",
              config: .timm(imageSize: 224, patchSize: 16, classes: 1000, embedDim: 384, depth: 12, heads: 6)),
    ]

    public static func named(_ name: String) -> ViTConfig? {
        all.first { $0.name == name.lowercased() }?.config
    }

    public static var names: [String] { all.map(\.name) }
}
