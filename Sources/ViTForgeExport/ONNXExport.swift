import Foundation
import SwiftProtobuf
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

/// ONNX export of any model ViTForge loads: per-block widths, heads of different widths, q/k ≠ v, blocks without
/// heads, custom attention scales, class/distillation tokens, token or average pooling. Opset 17 (LayerNormalization
/// is a standard op from 17 on), IR version 8, input `input` [batch, C, H, W] and output `logits` [batch, classes]
/// with a symbolic batch; a token-pruned model gathers its kept tokens before each block whose set shrinks. The graph computes what `VisionTransformer.forward` computes (eval mode; training masks
/// are not part of a saved model), in the same float32 operations up to summation order.
public enum ONNXExport {
    public static let opset = 17
    public static let irVersion = 8
    public static let inputName = "input"
    public static let outputName = "logits"
    public static let batchSymbol = "batch"

    /// The serialized `ModelProto`; `producerVersion` is vitforge's version. The model's configuration is kept in
    /// the metadata under `vitforge.config`, as in its safetensors file, a trimmed head's classes under
    /// `vitforge.class_ids`, and class names and preprocessing as `deploymentMetadata` writes them.
    public static func modelData(_ weights: ViTWeights, producerVersion: String) throws -> Data {
        var model = Onnx_ModelProto()
        model.irVersion = Int64(irVersion)
        model.producerName = "vitforge"
        model.producerVersion = producerVersion
        var opsetID = Onnx_OperatorSetIdProto()
        opsetID.domain = ""
        opsetID.version = Int64(opset)
        model.opsetImport = [opsetID]
        var config = Onnx_StringStringEntryProto()
        config.key = ViTConfig.metadataKey
        config.value = weights.config.jsonString()
        model.metadataProps = [config]
        if let classIds = weights.config.classIds {
            // A head trimmed to a class subset: output k is the data set's class classIds[k] (as `infer` writes it).
            var ids = Onnx_StringStringEntryProto()
            ids.key = "vitforge.class_ids"
            ids.value = classIds.map(String.init).joined(separator: ",")
            model.metadataProps.append(ids)
        }
        for (key, value) in deploymentMetadata(weights.config) {
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            model.metadataProps.append(entry)
        }
        model.graph = try graph(weights)
        return try model.serializedData()
    }

    /// What a deployer needs beside the graph, as JSON strings: `vitforge.class_names` (the name of each logit
    /// column, when the model has names) and `vitforge.preprocessing` (`input_size` [C, H, W], and when the model
    /// stores them `mean`, `std` per channel for pixels scaled to [0, 1], `interpolation` and `crop_pct` as timm
    /// names them).
    public static func deploymentMetadata(_ config: ViTConfig) -> [(key: String, value: String)] {
        var entries: [(key: String, value: String)] = []
        func json(_ object: Any) -> String {
            let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            return data.flatMap { String(data: $0, encoding: .utf8) } ?? "null"
        }
        if let names = config.classNames { entries.append(("vitforge.class_names", json(names))) }
        var preprocessing: [String: Any] = ["input_size": [config.inChannels, config.imageSize, config.imageSize]]
        if let stored = config.preprocessing {
            preprocessing["mean"] = stored.mean
            preprocessing["std"] = stored.std
            preprocessing["interpolation"] = stored.interpolation.rawValue
            preprocessing["crop_pct"] = stored.cropPct
        }
        entries.append(("vitforge.preprocessing", json(preprocessing)))
        return entries
    }

    /// Writes the model atomically to `path`, never over one of `protecting`.
    public static func write(_ weights: ViTWeights, to path: String, producerVersion: String,
                             protecting inputs: [String]) throws {
        try AtomicFile.write(modelData(weights, producerVersion: producerVersion), to: path, protecting: inputs)
    }

    static func graph(_ weights: ViTWeights) throws -> Onnx_GraphProto {
        var export = GraphExport(weights: weights)
        try export.build()
        return export.builder.graph
    }
}

/// One export in progress: the weights and the graph being built, one method per part of the forward pass.
struct GraphExport {
    let weights: ViTWeights
    var builder = ONNXGraphBuilder()
    /// Parameters already in the graph (a distilled model's two heads share the final norm).
    var parameterValues: [String: String] = [:]
    var config: ViTConfig { weights.config }

    init(weights: ViTWeights) { self.weights = weights }

    func values(_ name: String) throws -> HostTensor {
        guard let tensor = weights[name] else {
            throw ModelFileError(file: weights.sourcePath ?? ModelFileError.inMemory, key: name, .missingKey)
        }
        return tensor
    }

    /// A parameter as it is (LayerNorm scales, biases, embeddings, the patch convolution).
    mutating func parameter(_ name: String) throws -> String {
        if let existing = parameterValues[name] { return existing }
        let tensor = try values(name)
        let value = builder.floats(name, shape: tensor.shape, tensor.values)
        parameterValues[name] = value
        return value
    }

    /// Rows `rows` of a [out, in] weight, transposed to [in, rows.count] so that `x · W` is one MatMul.
    mutating func transposedRows(_ name: String, _ rows: Range<Int>, as valueName: String) throws -> String {
        let tensor = try values(name)
        let inFeatures = tensor.shape[1]
        var transposed = [Float](repeating: 0, count: inFeatures * rows.count)
        for (column, row) in rows.enumerated() {
            for feature in 0..<inFeatures {
                transposed[feature * rows.count + column] = tensor.values[row * inFeatures + feature]
            }
        }
        return builder.floats(valueName, shape: [inFeatures, rows.count], transposed)
    }

    /// `x · W[rows]ᵀ + b[rows]` for a [out, in] weight and its bias (when `bias` names one).
    mutating func linear(_ x: String, weight: String, bias: String?, rows: Range<Int>? = nil, name: String) throws
        -> String {
        let all = 0..<(try values(weight).shape[0])
        let range = rows ?? all
        let suffix = rows == nil ? "" : "[\(range.lowerBound):\(range.upperBound)]"
        let product = builder.add("MatMul", [x, try transposedRows(weight, range, as: weight + suffix + ".T")],
                                  name: name + ".matmul")
        guard let bias else { return product }
        let biasValues = try values(bias).values
        let biasName = builder.floats(bias + suffix, shape: [range.count], Array(biasValues[range]))
        return builder.add("Add", [product, biasName], name: name)
    }

    mutating func layerNorm(_ x: String, _ prefix: String, name: String) throws -> String {
        builder.add("LayerNormalization", [x, try parameter(prefix + ".weight"), try parameter(prefix + ".bias")],
                    [ONNXAttribute.int("axis", -1), ONNXAttribute.float("epsilon", Float(config.layerNormEps))],
                    name: name)
    }

    mutating func build() throws {
        let c = config
        builder.setName("vitforge-vit")
        builder.input(ONNXExport.inputName, [.symbolic(ONNXExport.batchSymbol), .fixed(c.inChannels),
                                             .fixed(c.imageSize), .fixed(c.imageSize)])
        var x = try embed()
        for index in c.blocks.indices {
            if let rows = c.gatheredRows(block: index) {
                // Static token pruning: the block runs on the kept rows of the previous block's output.
                x = builder.add("Gather", [x, builder.int64s("blocks.\(index).kept_tokens", rows)],
                                [ONNXAttribute.int("axis", 1)], name: "blocks.\(index).tokens")
            }
            x = try block(index, x)
        }
        let logits = try head(x)
        builder.output(logits, [.symbolic(ONNXExport.batchSymbol), .fixed(c.classes)])
    }

    /// Patches → tokens [batch, tokens, width]: the patch convolution flattened to a sequence, the prefix tokens
    /// (class, distillation) broadcast over the batch in front, then the position embedding.
    mutating func embed() throws -> String {
        let c = config
        let conv = builder.add("Conv", [ONNXExport.inputName, try parameter("patch_embed.proj.weight"),
                                        try parameter("patch_embed.proj.bias")],
                               [ONNXAttribute.ints("kernel_shape", [c.patchSize, c.patchSize]),
                                ONNXAttribute.ints("strides", [c.patchSize, c.patchSize])],
                               name: "patch_embed")
        let flat = builder.add("Reshape", [conv, builder.int64s("patch_embed.shape", [0, c.residualWidth, -1])],
                               name: "patch_embed.flat")  // [batch, width, patches]
        var tokens = builder.add("Transpose", [flat], [ONNXAttribute.ints("perm", [0, 2, 1])],
                                 name: "patch_tokens")  // [batch, patches, width]
        if c.prefixTokens > 0 {
            var prefix = try values(c.classToken ? "cls_token" : "dist_token").values
            if c.classToken && c.distillationToken { prefix += try values("dist_token").values }
            let prefixName = builder.floats(c.distillationToken ? "cls_token+dist_token" : "cls_token",
                                            shape: [1, c.prefixTokens, c.residualWidth], prefix)
            let batch = builder.add("Shape", [ONNXExport.inputName],
                                    [ONNXAttribute.int("start", 0), ONNXAttribute.int("end", 1)], name: "batch_size")
            let shape = builder.add("Concat", [batch, builder.int64s("prefix.shape", [c.prefixTokens, c.residualWidth])],
                                    [ONNXAttribute.int("axis", 0)], name: "prefix.expanded_shape")
            let expanded = builder.add("Expand", [prefixName, shape], name: "prefix_tokens")
            tokens = builder.add("Concat", [expanded, tokens], [ONNXAttribute.int("axis", 1)], name: "tokens")
        }
        return builder.add("Add", [tokens, try parameter("pos_embed")], name: "embedded")
    }

    /// One pre-norm block: `x + attn(norm1(x))`, then `+ mlp(norm2(·))`.
    mutating func block(_ index: Int, _ x: String) throws -> String {
        let prefix = "blocks.\(index)."
        let spec = config.blocks[index]
        let attentionOut: String
        if spec.heads == 0 {
            // Every head pruned: the branch is proj's bias on every token.
            attentionOut = try parameter(prefix + "attn.proj.bias")
        } else {
            let normed = try layerNorm(x, prefix + "norm1", name: prefix + "norm1")
            let merged = spec.hasUniformHeads ? try uniformAttention(index, normed) : try perHeadAttention(index, normed)
            attentionOut = try linear(merged, weight: prefix + "attn.proj.weight", bias: prefix + "attn.proj.bias",
                                      name: prefix + "attn.proj")
        }
        let middle = builder.add("Add", [x, attentionOut], name: prefix + "residual1")
        let normed = try layerNorm(middle, prefix + "norm2", name: prefix + "norm2")
        let hidden = try linear(normed, weight: prefix + "mlp.fc1.weight", bias: prefix + "mlp.fc1.bias",
                                name: prefix + "mlp.fc1")
        let activated = gelu(hidden, name: prefix + "mlp.gelu")
        let out = try linear(activated, weight: prefix + "mlp.fc2.weight", bias: prefix + "mlp.fc2.bias",
                             name: prefix + "mlp.fc2")
        return builder.add("Add", [middle, out], name: prefix + "residual2")
    }

    /// The exact erf GELU, `x · (1 + erf(x / √2)) / 2` (opset 17 has no Gelu op).
    mutating func gelu(_ x: String, name: String) -> String {
        let scaled = builder.add("Mul", [x, builder.scalar(name + ".inv_sqrt2", Float(1 / 2.0.squareRoot()))],
                                 name: name + ".scaled")
        let erf = builder.add("Erf", [scaled], name: name + ".erf")
        let onePlus = builder.add("Add", [erf, builder.scalar(name + ".one", 1)], name: name + ".one_plus")
        let product = builder.add("Mul", [x, onePlus], name: name + ".product")
        return builder.add("Mul", [product, builder.scalar(name + ".half", 0.5)], name: name)
    }

    /// Heads of equal widths: q, k and v as [batch, heads, tokens, dim] and one batched product per step.
    mutating func uniformAttention(_ index: Int, _ x: String) throws -> String {
        let prefix = "blocks.\(index).attn."
        let spec = config.blocks[index]
        let layout = QKVLayout(spec)
        let heads = spec.heads, qk = spec.qkDim, v = spec.vDim
        let bias: String? = config.qkvBias ? prefix + "qkv.bias" : nil
        func project(_ part: String, _ rows: Range<Int>, _ dim: Int, perm: [Int]) throws -> String {
            let flat = try linear(x, weight: prefix + "qkv.weight", bias: bias, rows: rows, name: prefix + part)
            let split = builder.add("Reshape", [flat, builder.int64s(prefix + part + ".shape", [0, 0, heads, dim])],
                                    name: prefix + part + ".heads")
            return builder.add("Transpose", [split], [ONNXAttribute.ints("perm", perm)], name: prefix + part + ".t")
        }
        let q = try project("q", 0..<layout.totalQK, qk, perm: [0, 2, 1, 3])  // [b, h, n, qk]
        let kT = try project("k", layout.totalQK..<2 * layout.totalQK, qk, perm: [0, 2, 3, 1])  // [b, h, qk, n]
        let values = try project("v", 2 * layout.totalQK..<layout.qkvFeatures, v, perm: [0, 2, 1, 3])  // [b, h, n, v]
        let weighted = attend(q, kT, values, scale: spec.attentionScale, name: prefix + "heads")  // [b, h, n, v]
        let tokensFirst = builder.add("Transpose", [weighted], [ONNXAttribute.ints("perm", [0, 2, 1, 3])],
                                      name: prefix + "merged.t")
        return builder.add("Reshape", [tokensFirst, builder.int64s(prefix + "merged.shape", [0, 0, heads * v])],
                           name: prefix + "merged")
    }

    /// Heads of different widths: each head's q, k and v projected on its own rows, attended, and the heads'
    /// values concatenated in `attn.proj`'s column order.
    mutating func perHeadAttention(_ index: Int, _ x: String) throws -> String {
        let prefix = "blocks.\(index).attn."
        let spec = config.blocks[index]
        let layout = QKVLayout(spec)
        let bias: String? = config.qkvBias ? prefix + "qkv.bias" : nil
        var outputs: [String] = []
        for head in 0..<spec.heads {
            let name = prefix + "head\(head)"
            let qStart = layout.qRow(head: head, dim: 0), kStart = layout.kRow(head: head, dim: 0)
            let vStart = layout.vRow(head: head, dim: 0)
            let q = try linear(x, weight: prefix + "qkv.weight", bias: bias,
                               rows: qStart..<qStart + layout.qkDims[head], name: name + ".q")  // [b, n, qk_h]
            let k = try linear(x, weight: prefix + "qkv.weight", bias: bias,
                               rows: kStart..<kStart + layout.qkDims[head], name: name + ".k")
            let v = try linear(x, weight: prefix + "qkv.weight", bias: bias,
                               rows: vStart..<vStart + layout.vDims[head], name: name + ".v")  // [b, n, v_h]
            let kT = builder.add("Transpose", [k], [ONNXAttribute.ints("perm", [0, 2, 1])], name: name + ".k.t")
            outputs.append(attend(q, kT, v, scale: spec.attentionScale, name: name))
        }
        return builder.add("Concat", outputs, [ONNXAttribute.int("axis", -1)], name: prefix + "merged")
    }

    /// `softmax(scale · q · kᵀ) · v` over the last two axes.
    mutating func attend(_ q: String, _ kT: String, _ v: String, scale: Double, name: String) -> String {
        let scores = builder.add("MatMul", [q, kT], name: name + ".scores")
        let scaled = builder.add("Mul", [scores, builder.scalar(name + ".scale", Float(scale))], name: name + ".scaled")
        let probabilities = builder.add("Softmax", [scaled], [ONNXAttribute.int("axis", -1)], name: name + ".softmax")
        return builder.add("MatMul", [probabilities, v], name: name + ".weighted")
    }

    /// Pooling, final norm and classifier; a distilled model averages its two heads, as at inference in DeiT.
    mutating func head(_ x: String) throws -> String {
        let c = config
        func classify(_ pooled: String, _ headName: String, output: String) throws -> String {
            let normed = try layerNorm(pooled, c.finalNormName, name: c.finalNormName + (headName == "head" ? "" : ".dist"))
            return try linear(normed, weight: headName + ".weight", bias: headName + ".bias", name: output)
        }
        if c.pooling == .avg {
            let patches = builder.add("Slice", [x, builder.int64s("patches.start", [c.prefixTokens]),
                                                builder.int64s("patches.end", [c.finalTokens]),
                                                builder.int64s("patches.axes", [1])], name: "patch_rows")
            let mean = builder.add("ReduceMean", [patches], [ONNXAttribute.ints("axes", [1]),
                                                             ONNXAttribute.int("keepdims", 0)], name: "pooled")
            return try classify(mean, "head", output: ONNXExport.outputName)
        }
        func token(_ position: Int, name: String) -> String {
            builder.add("Gather", [x, builder.int64s(name + ".index", [position], shape: [])],
                        [ONNXAttribute.int("axis", 1)], name: name)
        }
        if !c.distillationToken { return try classify(token(0, name: "cls"), "head", output: ONNXExport.outputName) }
        let main = try classify(token(0, name: "cls"), "head", output: "logits.cls")
        let distilled = try classify(token(1, name: "dist"), "head_dist", output: "logits.dist")
        let sum = builder.add("Add", [main, distilled], name: "logits.sum")
        return builder.add("Mul", [sum, builder.scalar("logits.half", 0.5)], name: ONNXExport.outputName)
    }
}
