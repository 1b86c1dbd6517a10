import Foundation
import SwiftProtobuf

/// Appends nodes and initializers to an ONNX graph under unique value names, so the exporter reads as the model's
/// forward pass: `let h = builder.add("LayerNormalization", [x, gamma, beta], ...)`.
struct ONNXGraphBuilder {
    private(set) var graph = Onnx_GraphProto()
    private var usedNames = Set<String>()

    /// `base`, or `base_2`, `base_3`… when taken (every value in an ONNX graph has exactly one producer).
    mutating func uniqueName(_ base: String) -> String {
        var name = base, suffix = 1
        while usedNames.contains(name) {
            suffix += 1
            name = "\(base)_\(suffix)"
        }
        usedNames.insert(name)
        return name
    }

    /// A float32 initializer (little-endian `raw_data`, the format's compact form), returning its value name.
    mutating func floats(_ name: String, shape: [Int], _ values: [Float]) -> String {
        precondition(shape.reduce(1, *) == values.count, "\(name): \(values.count) values for shape \(shape)")
        var tensor = Onnx_TensorProto()
        tensor.name = uniqueName(name)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.dims = shape.map(Int64.init)
        tensor.rawData = values.withUnsafeBufferPointer { buffer in
            var data = Data(capacity: buffer.count * 4)
            for value in buffer { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            return data
        }
        graph.initializer.append(tensor)
        return tensor.name
    }

    /// A float32 scalar (rank 0) initializer.
    mutating func scalar(_ name: String, _ value: Float) -> String { floats(name, shape: [], [value]) }

    /// An int64 initializer (shapes, indices, axes); `shape` nil makes a 1-D tensor of `values`.
    mutating func int64s(_ name: String, _ values: [Int], shape: [Int]? = nil) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = uniqueName(name)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        tensor.dims = (shape ?? [values.count]).map(Int64.init)
        tensor.int64Data = values.map(Int64.init)
        graph.initializer.append(tensor)
        return tensor.name
    }

    /// One node with one output named after `name`; returns the output's value name.
    mutating func add(_ op: String, _ inputs: [String], _ attributes: [Onnx_AttributeProto] = [],
                      name: String) -> String {
        var node = Onnx_NodeProto()
        node.opType = op
        node.input = inputs
        let output = uniqueName(name)
        node.output = [output]
        node.name = output
        node.attribute = attributes
        graph.node.append(node)
        return output
    }

    mutating func input(_ name: String, _ dims: [ONNXDimension]) {
        usedNames.insert(name)
        graph.input.append(Self.valueInfo(name, dims))
    }

    mutating func output(_ name: String, _ dims: [ONNXDimension]) {
        graph.output.append(Self.valueInfo(name, dims))
    }

    mutating func setName(_ name: String) { graph.name = name }

    static func valueInfo(_ name: String, _ dims: [ONNXDimension]) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { dimension in
            var dim = Onnx_TensorShapeProto.Dimension()
            switch dimension {
            case let .fixed(size): dim.dimValue = Int64(size)
            case let .symbolic(symbol): dim.dimParam = symbol
            }
            return dim
        }
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensorType.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        return info
    }
}

/// A dimension of a graph input or output: a size, or a name the runtime binds (the batch).
enum ONNXDimension {
    case fixed(Int)
    case symbolic(String)
}

/// Node attributes.
enum ONNXAttribute {
    static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        attribute.name = name
        attribute.type = .int
        attribute.i = Int64(value)
        return attribute
    }

    static func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        attribute.name = name
        attribute.type = .ints
        attribute.ints = values.map(Int64.init)
        return attribute
    }

    static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        attribute.name = name
        attribute.type = .float
        attribute.f = value
        return attribute
    }
}
