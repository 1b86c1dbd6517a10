import Foundation
@testable import ViTForgeExport

/// A float64 interpreter of the ONNX ops the exporter writes, written plainly from the operator definitions (numpy
/// broadcasting, opset-17 attributes), so the exported graph can be checked against the float64 reference ViT in
/// `swift test` without onnxruntime (CI also runs onnxruntime itself: Tests/Deployment/onnx_check.py).
struct ONNXEvaluator {
    struct Tensor {
        var shape: [Int]
        var data: [Double]

        var count: Int { shape.reduce(1, *) }
        func strides() -> [Int] {
            var result = [Int](repeating: 1, count: shape.count)
            for axis in stride(from: shape.count - 2, through: 0, by: -1) { result[axis] = result[axis + 1] * shape[axis + 1] }
            return result
        }
    }

    enum Failure: Error, CustomStringConvertible {
        case unsupported(String)
        case missing(String)
        var description: String {
            switch self {
            case let .unsupported(what): return "unsupported: \(what)"
            case let .missing(name): return "no value \(name)"
            }
        }
    }

    let model: Onnx_ModelProto

    init(_ data: Data) throws { model = try Onnx_ModelProto(serializedBytes: data) }

    static func decode(_ tensor: Onnx_TensorProto) throws -> Tensor {
        let shape = tensor.dims.map(Int.init)
        switch tensor.dataType {
        case Int32(Onnx_TensorProto.DataType.float.rawValue):
            let raw = [UInt8](tensor.rawData)
            let values = (0..<raw.count / 4).map { index -> Double in
                let bits = UInt32(raw[4 * index]) | UInt32(raw[4 * index + 1]) << 8 | UInt32(raw[4 * index + 2]) << 16
                    | UInt32(raw[4 * index + 3]) << 24
                return Double(Float(bitPattern: bits))
            }
            return Tensor(shape: shape, data: values)
        case Int32(Onnx_TensorProto.DataType.int64.rawValue):
            return Tensor(shape: shape, data: tensor.int64Data.map(Double.init))
        default:
            throw Failure.unsupported("initializer type \(tensor.dataType)")
        }
    }

    /// The graph's output for `input`, evaluated node by node in file order (which must therefore be topological).
    func run(_ input: Tensor) throws -> Tensor {
        var values: [String: Tensor] = [:]
        for initializer in model.graph.initializer { values[initializer.name] = try Self.decode(initializer) }
        values[model.graph.input[0].name] = input
        for node in model.graph.node {
            let inputs = try node.input.map { name -> Tensor in
                guard let value = values[name] else { throw Failure.missing(name) }
                return value
            }
            var attributes: [String: Onnx_AttributeProto] = [:]
            for attribute in node.attribute { attributes[attribute.name] = attribute }
            values[node.output[0]] = try Self.apply(node.opType, inputs, attributes)
        }
        guard let output = values[model.graph.output[0].name] else { throw Failure.missing(model.graph.output[0].name) }
        return output
    }

    static func axis(_ value: Int64, rank: Int) -> Int { value < 0 ? Int(value) + rank : Int(value) }

    static func apply(_ op: String, _ x: [Tensor], _ attributes: [String: Onnx_AttributeProto]) throws -> Tensor {
        switch op {
        case "Add": return broadcast(x[0], x[1], +)
        case "Mul": return broadcast(x[0], x[1], *)
        case "Erf": return Tensor(shape: x[0].shape, data: x[0].data.map(erf))
        case "MatMul": return matmul(x[0], x[1])
        case "Transpose": return transpose(x[0], attributes["perm"]!.ints.map(Int.init))
        case "Reshape":
            var shape = x[1].data.enumerated().map { Int($0.element) == 0 ? x[0].shape[$0.offset] : Int($0.element) }
            if let unknown = shape.firstIndex(of: -1) {
                shape[unknown] = x[0].count / shape.filter { $0 != -1 }.reduce(1, *)
            }
            return Tensor(shape: shape, data: x[0].data)
        case "Shape":
            let start = Int(attributes["start"]?.i ?? 0), end = Int(attributes["end"]?.i ?? Int64(x[0].shape.count))
            return Tensor(shape: [end - start], data: x[0].shape[start..<end].map(Double.init))
        case "Concat": return concat(x, axis: axis(attributes["axis"]!.i, rank: x[0].shape.count))
        case "Expand":
            let target = x[1].data.map(Int.init)
            return broadcast(x[0], Tensor(shape: target, data: [Double](repeating: 0, count: target.reduce(1, *))), { a, _ in a })
        case "Softmax": return softmax(x[0])
        case "LayerNormalization": return layerNorm(x[0], x[1], x[2], eps: Double(attributes["epsilon"]!.f))
        case "Conv": return patchConv(x[0], x[1], x[2], patch: Int(attributes["strides"]!.ints[0]))
        case "Slice":
            let axisIndex = axis(Int64(x[3].data[0]), rank: x[0].shape.count)
            return slice(x[0], axis: axisIndex, Int(x[1].data[0])..<Int(x[2].data[0]))
        case "ReduceMean":
            let axisIndex = axis(attributes["axes"]!.ints[0], rank: x[0].shape.count)
            let length = x[0].shape[axisIndex]
            var sum = slice(x[0], axis: axisIndex, 0..<1)
            for index in 1..<length { sum = broadcast(sum, slice(x[0], axis: axisIndex, index..<index + 1), +) }
            var shape = x[0].shape
            shape.remove(at: axisIndex)
            return Tensor(shape: shape, data: sum.data.map { $0 / Double(length) })
        case "Gather":
            let axisIndex = axis(attributes["axis"]!.i, rank: x[0].shape.count)
            if !x[1].shape.isEmpty {  // a vector of indices keeps the axis
                return concat(x[1].data.map { slice(x[0], axis: axisIndex, Int($0)..<Int($0) + 1) }, axis: axisIndex)
            }
            let position = Int(x[1].data[0])
            var picked = slice(x[0], axis: axisIndex, position..<position + 1)
            picked.shape.remove(at: axisIndex)
            return picked
        default:
            throw Failure.unsupported(op)
        }
    }

    /// numpy broadcasting of two tensors.
    static func broadcast(_ a: Tensor, _ b: Tensor, _ combine: (Double, Double) -> Double) -> Tensor {
        let rank = max(a.shape.count, b.shape.count)
        let aShape = [Int](repeating: 1, count: rank - a.shape.count) + a.shape
        let bShape = [Int](repeating: 1, count: rank - b.shape.count) + b.shape
        let shape = zip(aShape, bShape).map { max($0, $1) }
        let aStrides = Tensor(shape: aShape, data: []).strides(), bStrides = Tensor(shape: bShape, data: []).strides()
        let outStrides = Tensor(shape: shape, data: []).strides()
        let count = shape.reduce(1, *)
        var data = [Double](repeating: 0, count: count)
        for flat in 0..<count {
            var aIndex = 0, bIndex = 0, rest = flat
            for axis in 0..<rank {
                let coordinate = rest / outStrides[axis]
                rest %= outStrides[axis]
                if aShape[axis] > 1 { aIndex += coordinate * aStrides[axis] }
                if bShape[axis] > 1 { bIndex += coordinate * bStrides[axis] }
            }
            data[flat] = combine(a.data[aIndex], b.data[bIndex])
        }
        return Tensor(shape: shape, data: data)
    }

    static func transpose(_ x: Tensor, _ perm: [Int]) -> Tensor {
        let shape = perm.map { x.shape[$0] }
        let inStrides = x.strides(), outStrides = Tensor(shape: shape, data: []).strides()
        var data = [Double](repeating: 0, count: x.count)
        for flat in 0..<x.count {
            var source = 0, rest = flat
            for axis in 0..<shape.count {
                let coordinate = rest / outStrides[axis]
                rest %= outStrides[axis]
                source += coordinate * inStrides[perm[axis]]
            }
            data[flat] = x.data[source]
        }
        return Tensor(shape: shape, data: data)
    }

    /// numpy matmul: the last two axes multiply, the leading axes broadcast.
    static func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        let n = a.shape[a.shape.count - 2], k = a.shape.last!, m = b.shape.last!
        let aBatch = Array(a.shape.dropLast(2)), bBatch = Array(b.shape.dropLast(2))
        let rank = max(aBatch.count, bBatch.count)
        let aPadded = [Int](repeating: 1, count: rank - aBatch.count) + aBatch
        let bPadded = [Int](repeating: 1, count: rank - bBatch.count) + bBatch
        let batch = zip(aPadded, bPadded).map { max($0, $1) }
        let batchCount = batch.reduce(1, *)
        let batchStrides = Tensor(shape: batch, data: []).strides()
        let aStrides = Tensor(shape: aPadded, data: []).strides(), bStrides = Tensor(shape: bPadded, data: []).strides()
        var data = [Double](repeating: 0, count: batchCount * n * m)
        for index in 0..<batchCount {
            var aOffset = 0, bOffset = 0, rest = index
            for axis in 0..<rank {
                let coordinate = rest / batchStrides[axis]
                rest %= batchStrides[axis]
                if aPadded[axis] > 1 { aOffset += coordinate * aStrides[axis] }
                if bPadded[axis] > 1 { bOffset += coordinate * bStrides[axis] }
            }
            aOffset *= n * k
            bOffset *= k * m
            for row in 0..<n {
                for column in 0..<m {
                    var sum = 0.0
                    for inner in 0..<k { sum += a.data[aOffset + row * k + inner] * b.data[bOffset + inner * m + column] }
                    data[(index * n + row) * m + column] = sum
                }
            }
        }
        return Tensor(shape: batch + [n, m], data: data)
    }

    static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        let outer = parts[0].shape[..<axis].reduce(1, *)
        var shape = parts[0].shape
        shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        var data: [Double] = []
        for block in 0..<outer {
            for part in parts {
                let chunk = part.shape[axis...].reduce(1, *)
                data += part.data[(block * chunk)..<((block + 1) * chunk)]
            }
        }
        return Tensor(shape: shape, data: data)
    }

    static func slice(_ x: Tensor, axis: Int, _ range: Range<Int>) -> Tensor {
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        var shape = x.shape
        shape[axis] = range.count
        var data: [Double] = []
        for block in 0..<outer {
            let base = block * x.shape[axis] * inner
            data += x.data[(base + range.lowerBound * inner)..<(base + range.upperBound * inner)]
        }
        return Tensor(shape: shape, data: data)
    }

    static func softmax(_ x: Tensor) -> Tensor {
        let width = x.shape.last!
        var data = x.data
        for row in 0..<(x.count / width) {
            let values = x.data[(row * width)..<((row + 1) * width)]
            let peak = values.max()!
            let exps = values.map { exp($0 - peak) }
            let total = exps.reduce(0, +)
            for (index, value) in exps.enumerated() { data[row * width + index] = value / total }
        }
        return Tensor(shape: x.shape, data: data)
    }

    static func layerNorm(_ x: Tensor, _ gamma: Tensor, _ beta: Tensor, eps: Double) -> Tensor {
        let width = x.shape.last!
        var data = x.data
        for row in 0..<(x.count / width) {
            let values = Array(x.data[(row * width)..<((row + 1) * width)])
            let mean = values.reduce(0, +) / Double(width)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
            for index in 0..<width {
                data[row * width + index] = (values[index] - mean) / (variance + eps).squareRoot() * gamma.data[index]
                    + beta.data[index]
            }
        }
        return Tensor(shape: x.shape, data: data)
    }

    /// Conv with kernel = stride = `patch` and no padding (the exporter's only use).
    static func patchConv(_ x: Tensor, _ weight: Tensor, _ bias: Tensor, patch: Int) -> Tensor {
        let (batch, channels, side) = (x.shape[0], x.shape[1], x.shape[2])
        let outChannels = weight.shape[0], grid = side / patch
        var data = [Double](repeating: 0, count: batch * outChannels * grid * grid)
        for image in 0..<batch {
            for out in 0..<outChannels {
                for gy in 0..<grid {
                    for gx in 0..<grid {
                        var sum = bias.data[out]
                        for channel in 0..<channels {
                            for ky in 0..<patch {
                                for kx in 0..<patch {
                                    sum += x.data[((image * channels + channel) * side + gy * patch + ky) * side + gx * patch + kx]
                                        * weight.data[((out * channels + channel) * patch + ky) * patch + kx]
                                }
                            }
                        }
                        data[((image * outChannels + out) * grid + gy) * grid + gx] = sum
                    }
                }
            }
        }
        return Tensor(shape: [batch, outChannels, grid, grid], data: data)
    }
}
