import Foundation
import Testing
import ViTForgeDevice
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeSupport
import ViTForgeTestBasics
import ViTForgeTestSupport

/// Channel masks in the product's forward and backward: soft masks' gradients against central finite differences
/// of the float64 reference, and 0/1 masks on heads, q/k dims, v dims and MLP neurons against the reference's
/// masked semantics (what surgery's pruned model computes).
@Suite(.serialized)
struct ChannelMaskTests {
    typealias Problem = ReferenceModelTests.Problem

    /// Soft masks in (0, 1.5) on every qkv column and MLP neuron of every block but the middle one's MLP (a block
    /// without a mask must still work beside masked ones).
    static func softMasks(_ config: ViTConfig, generator: inout SeededGenerator) -> ReferenceViT.SoftMasks {
        ReferenceViT.SoftMasks(
            qkvColumns: config.blocks.map { block in
                (0 ..< block.heads * (2 * block.qkDim + block.vDim)).map { _ in 0.75 + 0.7 * generator.uniform() }
            },
            mlpHidden: config.blocks.enumerated().map { index, block in
                index == 1 ? nil : (0 ..< block.mlpHidden).map { _ in 0.75 + 0.7 * generator.uniform() }
            })
    }

    /// The product's masks holding `soft`'s values (float32), with zeroed gradient buffers.
    static func productMasks(_ soft: ReferenceViT.SoftMasks, backend: any Backend) throws -> [BlockMasks] {
        try zip(soft.qkvColumns, soft.mlpHidden).map { qkv, mlp in
            BlockMasks(
                qkv: try qkv.map { ChannelMask(values: try backend.makeBuffer($0.map { Float($0) }),
                                               gradient: try backend.zeros($0.count)) },
                mlpHidden: try mlp.map { ChannelMask(values: try backend.makeBuffer($0.map { Float($0) }),
                                                     gradient: try backend.zeros($0.count)) })
        }
    }

    /// A 0/1 residual mask keeping 9 of the 13 channels.
    static let residualKeep = [true, false, true, true, true, false, true, true, false, true, true, false, true]

    @Test("soft masks (and a 0/1 residual mask): loss, mask gradients and weight gradients against the reference",
          arguments: ModelTestBackends.all, [false, true])
    func softMaskGradients(device: ModelBackend, residual: Bool) throws {
        for variant in ReferenceModelTests.Variant.allCases {
            try softMaskGradients(variant: variant, device: device, residual: residual)
        }
    }

    func softMaskGradients(variant: ReferenceModelTests.Variant, device: ModelBackend, residual: Bool) throws {
        let problem = try ReferenceModelTests.problem(variant, seed: 0x3A5C + UInt64(variant.rawValue.count))
        let backend = device.backend
        var generator = SeededGenerator(seed: 0x3A5D + UInt64(variant.rawValue.count))
        var reference = problem.reference
        reference.softMasks = Self.softMasks(problem.config, generator: &generator)
        let config = problem.config
        if residual {
            reference.masks = ReferenceViT.Masks(residual: Self.residualKeep, blocks: config.blocks.map { block in
                ReferenceViT.BlockMasks(
                    heads: [Bool](repeating: true, count: block.heads),
                    qk: block.qkDims.map { [Bool](repeating: true, count: $0) },
                    v: block.vDims.map { [Bool](repeating: true, count: $0) },
                    mlp: [Bool](repeating: true, count: block.mlpHidden), mlpClamp: nil)
            })
        }
        let masks = try Self.productMasks(try #require(reference.softMasks), backend: backend)
        let vit = try VisionTransformer(weights: problem.weights, backend: backend)
        try vit.setMasks(masks, residual: residual ? ChannelMask(values: try backend.makeBuffer(
            Self.residualKeep.map { $0 ? Float(1) : 0 })) : nil)
        try vit.zeroGradients()
        let images = problem.images.map(Double.init), labels = problem.labels.map(Int.init)
        let loss = try vit.crossEntropy(images: backend.makeBuffer(problem.images),
                                        labels: backend.makeBuffer(problem.labels), batch: problem.batch,
                                        backward: true)
        let referenceLoss = reference.loss(images, labels: labels, batch: problem.batch)
        #expect(abs(loss - referenceLoss) < 1e-5, "loss \(loss) vs reference \(referenceLoss)")

        let h = 1e-5
        var checked = 0
        for (b, mask) in masks.enumerated() {
            for (space, entry) in [("qkv", mask.qkv), ("mlp", mask.mlpHidden)] {
                guard let entry, let gradientBuffer = entry.gradient else { continue }
                let gradient = try backend.read(gradientBuffer)
                for index in gradient.indices {
                    var plus = reference, minus = reference
                    if space == "qkv" {
                        plus.softMasks!.qkvColumns[b]![index] += h
                        minus.softMasks!.qkvColumns[b]![index] -= h
                    } else {
                        plus.softMasks!.mlpHidden[b]![index] += h
                        minus.softMasks!.mlpHidden[b]![index] -= h
                    }
                    let finiteDifference = (plus.loss(images, labels: labels, batch: problem.batch)
                        - minus.loss(images, labels: labels, batch: problem.batch)) / (2 * h)
                    let got = Double(gradient[index])
                    #expect(abs(got - finiteDifference) <= 1e-3 * abs(finiteDifference) + 2e-5,
                            "\(variant) on \(backend.name): d loss / d \(space) mask \(b)[\(index)] = \(got), finite difference \(finiteDifference)")
                    checked += 1
                }
            }
        }
        let maskEntries = masks.reduce(0) { $0 + ($1.qkv?.values.count ?? 0) + ($1.mlpHidden?.values.count ?? 0) }
        #expect(checked == maskEntries && checked > 60, "checked \(checked) of \(maskEntries) mask entries")
        // The weights' gradients still match the reference with masks on.
        for (w, index) in [("blocks.0.attn.qkv.weight", 0), ("blocks.0.attn.qkv.weight", 7),
                           ("blocks.1.norm1.weight", 2), ("blocks.2.mlp.fc2.weight", 11), ("pos_embed", 3),
                           ("patch_embed.proj.weight", 5), ("blocks.1.attn.proj.weight", 4)] {
            let dW = try backend.read(vit.gradient(w))
            var plus = reference, minus = reference
            plus.parameters[w]![index] += h
            minus.parameters[w]![index] -= h
            let finiteDifference = (plus.loss(images, labels: labels, batch: problem.batch)
                - minus.loss(images, labels: labels, batch: problem.batch)) / (2 * h)
            #expect(abs(Double(dW[index]) - finiteDifference) <= 2e-3 * abs(finiteDifference) + 2e-5,
                    "\(variant) on \(backend.name): d loss / d \(w)[\(index)] = \(dW[index]), finite difference \(finiteDifference)")
        }
    }

    @Test("0/1 masks on the residual width, heads, q/k dims, v dims and MLP neurons compute the reference's masked model",
          arguments: ReferenceModelTests.Variant.allCases, ModelTestBackends.all)
    func binaryMasksMatchMaskedReference(variant: ReferenceModelTests.Variant, device: ModelBackend) throws {
        let problem = try ReferenceModelTests.problem(variant, seed: 0xB1 + UInt64(variant.rawValue.count))
        let backend = device.backend
        var generator = SeededGenerator(seed: 0xB2 + UInt64(variant.rawValue.count))
        let config = problem.config
        var blockMasks: [ReferenceViT.BlockMasks] = []
        var productMasks: [BlockMasks] = []
        for block in config.blocks {
            // Keep at least one head (of those there are), one q/k and v dim per head and one neuron, like a plan.
            var heads = (0 ..< block.heads).map { _ in generator.uniform() > -0.3 }
            if block.heads > 0 { heads[generator.below(block.heads)] = true }
            let qk = block.qkDims.map { width -> [Bool] in
                var dims = (0 ..< width).map { _ in generator.uniform() > -0.4 }
                dims[generator.below(width)] = true
                return dims
            }
            let v = block.vDims.map { width -> [Bool] in
                var dims = (0 ..< width).map { _ in generator.uniform() > -0.4 }
                dims[generator.below(width)] = true
                return dims
            }
            var mlp = (0 ..< block.mlpHidden).map { _ in generator.uniform() > -0.2 }
            mlp[generator.below(block.mlpHidden)] = true
            blockMasks.append(ReferenceViT.BlockMasks(heads: heads, qk: qk, v: v, mlp: mlp, mlpClamp: nil))
            let columns = QKVLayout(block).qkvColumnMultipliers(heads: heads.map { $0 ? Float(1) : 0 },
                                                                qkDims: qk.flatMap { $0.map { $0 ? 1 : 0 } },
                                                                vDims: v.flatMap { $0.map { $0 ? 1 : 0 } })
            productMasks.append(BlockMasks(qkv: ChannelMask(values: try backend.makeBuffer(columns)),
                                           mlpHidden: ChannelMask(values: try backend.makeBuffer(mlp.map { $0 ? Float(1) : 0 }))))
        }
        var reference = problem.reference
        reference.masks = ReferenceViT.Masks(residual: Self.residualKeep, blocks: blockMasks)
        let vit = try VisionTransformer(weights: problem.weights, backend: backend)
        try vit.setMasks(productMasks, residual: ChannelMask(values: try backend.makeBuffer(
            Self.residualKeep.map { $0 ? Float(1) : 0 })))
        let expected = reference.logits(problem.images.map(Double.init), batch: problem.batch).flatMap { $0 }
        let unmasked = problem.reference.logits(problem.images.map(Double.init), batch: problem.batch).flatMap { $0 }
        #expect(zip(expected, unmasked).contains { abs($0 - $1) > 1e-3 }, "the masks change nothing: a weak test")
        for keeping in [true, false] {
            let logits = try backend.read(vit.forward(images: backend.makeBuffer(problem.images), batch: problem.batch,
                                                      keepingActivations: keeping),
                                          count: problem.batch * config.classes)
            let error = zip(logits, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
            #expect(error < 2e-5, "\(variant) on \(backend.name), activations kept \(keeping): max |error| \(error)")
        }
        try vit.setMasks(nil)
        let plain = try backend.read(vit.forward(images: backend.makeBuffer(problem.images), batch: problem.batch),
                                     count: problem.batch * config.classes)
        #expect((zip(plain, unmasked).map { abs(Double($0) - $1) }.max() ?? .infinity) < 2e-5, "masks removed")
    }

    /// ViT-Slim's attention mask: one value per (head, dim) on that dim's q, k and v columns (`gather` to the
    /// columns), its gradient the sum of the three columns' gradients, against finite differences of the reference
    /// with the same values on the columns; heads of equal and of different widths; every granularity.
    @Test("a mask shared by q, k and v of a dim (and per head, per shared dim): gradients equal finite differences",
          arguments: ModelTestBackends.all, AttentionMaskGranularity.allCases)
    func sharedAttentionMaskGradient(device: ModelBackend, granularity: AttentionMaskGranularity) throws {
        let backend = device.backend
        let blocks = [BlockConfig(heads: 3, qkDim: 5, vDim: 5, mlpHidden: 7, attentionScale: 0.4),
                      granularity == .sharedDim ? BlockConfig(heads: 2, qkDim: 3, vDim: 3, mlpHidden: 6)
                          : BlockConfig(qkDims: [3, 1, 4], vDims: [3, 1, 4], mlpHidden: 6, attentionScale: 0.45)]
        let config = ViTConfig(imageSize: 9, patchSize: 3, inChannels: 2, classes: 5, residualWidth: 11,
                               blocks: blocks)
        var generator = SeededGenerator(seed: 0x51 + UInt64(granularity.rawValue.count))
        var tensors: [String: HostTensor] = [:], doubles: [String: [Double]] = [:]
        for spec in config.parameterSpecs() {
            let norm = spec.name.hasSuffix("norm1.weight") || spec.name.hasSuffix("norm2.weight")
                || spec.name == "norm.weight"
            let values = (0 ..< spec.elementCount).map { _ in Float(norm ? 1 + 0.2 * generator.uniform()
                                                                       : 0.4 * generator.uniform()) }
            tensors[spec.name] = HostTensor(shape: spec.shape, values: values)
            doubles[spec.name] = values.map(Double.init)
        }
        let batch = 2
        let images = (0 ..< batch * 2 * 81).map { _ in Float(generator.uniform()) }
        let labels: [Int32] = [1, 4]
        let layouts = blocks.map(QKVLayout.init)
        let indices = try layouts.map { try #require($0.qkvColumnIndices(granularity)) }
        let values = layouts.map { layout in
            (0 ..< layout.maskCount(granularity)).map { _ in Float(0.75 + 0.7 * generator.uniform()) }
        }
        // Product: z per block; columns = gather(z) before the forward; dz = scatterAdd(column gradients) after.
        let vit = try VisionTransformer(weights: ViTWeights(config: config, tensors: tensors), backend: backend)
        var masks: [BlockMasks] = []
        var dz: [Buffer] = []
        for (b, layout) in layouts.enumerated() {
            let z = try backend.makeBuffer(values[b])
            let columns = try backend.allocate(layout.qkvFeatures)
            let indexBuffer = try backend.makeBuffer(indices[b].map(Int32.init))
            try backend.gather(src: z, indices: indexBuffer, dst: columns, count: layout.qkvFeatures)
            masks.append(BlockMasks(qkv: ChannelMask(values: columns, gradient: try backend.zeros(layout.qkvFeatures))))
            dz.append(try backend.zeros(values[b].count))
        }
        try vit.setMasks(masks)
        try vit.zeroGradients()
        _ = try vit.crossEntropy(images: backend.makeBuffer(images), labels: backend.makeBuffer(labels),
                                 batch: batch, backward: true)
        // Each value's gradient is the sum of its columns' (q, k and v of the dim). For the dim granularity a method
        // does that on the device with one scatterAdd per part (indices are distinct within q, k and v); here the
        // sums are taken on the host for every granularity.
        for b in layouts.indices {
            let columnGradient = try backend.read(try #require(masks[b].qkv?.gradient))
            var sums = [Double](repeating: 0, count: values[b].count)
            for (column, index) in indices[b].enumerated() { sums[index] += Double(columnGradient[column]) }
            try backend.write(sums.map { Float($0) }, to: dz[b])
        }

        func loss(_ z: [[Double]]) -> Double {
            var reference = ReferenceViT(config: config, parameters: doubles)
            reference.softMasks = ReferenceViT.SoftMasks(
                qkvColumns: zip(indices, z).map { map, values in map.map { values[$0] } },
                mlpHidden: blocks.map { _ in nil })
            return reference.loss(images.map(Double.init), labels: labels.map(Int.init), batch: batch)
        }
        let base = values.map { $0.map(Double.init) }
        let h = 1e-5
        for b in blocks.indices {
            let gradient = try backend.read(dz[b])
            for index in gradient.indices {
                var plus = base, minus = base
                plus[b][index] += h
                minus[b][index] -= h
                let finiteDifference = (loss(plus) - loss(minus)) / (2 * h)
                #expect(abs(Double(gradient[index]) - finiteDifference) <= 1e-3 * abs(finiteDifference) + 2e-5,
                        "\(granularity) on \(backend.name): block \(b) mask \(index): \(gradient[index]) vs \(finiteDifference)")
            }
        }
    }

    @Test("ViT-Slim's attention mask spreads over q, k and v columns; granularities and their counts")
    func attentionMaskIndices() throws {
        let layout = QKVLayout(BlockConfig(heads: 3, qkDim: 5, vDim: 5, mlpHidden: 7))
        let dim = try #require(layout.qkvColumnIndices(.dim))
        #expect(dim.count == 45 && Set(dim).count == layout.maskCount(.dim))
        #expect(dim[layout.qRow(head: 2, dim: 3)] == 13 && dim[layout.kRow(head: 2, dim: 3)] == 13
                && dim[layout.vRow(head: 2, dim: 3)] == 13)
        #expect(try #require(layout.qkvColumnIndices(.head))[layout.vRow(head: 1, dim: 4)] == 1)
        #expect(try #require(layout.qkvColumnIndices(.sharedDim))[layout.kRow(head: 2, dim: 4)] == 4)
        #expect(QKVLayout(BlockConfig(heads: 2, qkDim: 3, vDim: 5, mlpHidden: 7)).qkvColumnIndices(.dim) == nil)
    }

    @Test("setMasks refuses masks of the wrong depth or size")
    func badMasks() throws {
        let problem = try ReferenceModelTests.problem(.tokenPooling, seed: 1)
        let backend = ModelTestBackends.all[0].backend
        let vit = try VisionTransformer(weights: problem.weights, backend: backend)
        #expect(throws: BackendError.self) { try vit.setMasks([BlockMasks()]) }
        #expect(throws: BackendError.self) {
            try vit.setMasks([BlockMasks(mlpHidden: ChannelMask(values: try backend.zeros(3))), BlockMasks(),
                              BlockMasks()])
        }
    }
}
