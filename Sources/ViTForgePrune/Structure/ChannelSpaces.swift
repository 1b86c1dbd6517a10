import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// What one axis of one parameter tensor indexes. Every pruning decision is a choice of indices along axes of a
/// given role, so this table (`parameterAxes`) is the single place where the model's structure enters pruning:
/// dependency groups (`DependencyGroups.swift`) and surgery (`Surgery.swift`) are both derived from it, and a new
/// parameter without an entry is an error rather than a silently unpruned tensor.
public enum AxisRole: Hashable, Sendable {
    /// One channel of the residual stream (shared by every block: embeddings, every LayerNorm, every linear layer
    /// that reads from or writes to the stream, and the head's input).
    case residual
    /// An output feature of block `b`'s fused `attn.qkv`: q (heads·qkDim), k (heads·qkDim), v (heads·vDim), each
    /// head-major (REFERENCE.md §3.3). Heads, q/k dims and v dims all live on this axis; `QKVLayout` maps them.
    case qkvFeatures(block: Int)
    /// An input column of block `b`'s `attn.proj`: the merged heads' values, `head·vDim + d`.
    case mergedValues(block: Int)
    /// A hidden neuron of block `b`'s MLP (`fc1` rows and bias, `fc2` columns).
    case mlpHidden(block: Int)
    /// Not prunable: classes, tokens, input channels, patch pixels, the leading 1 of `cls_token`.
    case fixed
}

/// A parameter tensor with the role of each of its axes.
public struct ParameterAxes: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var roles: [AxisRole]
}

public enum ChannelSpaceError: Error, CustomStringConvertible, Equatable, Sendable {
    case noAxisRoles(String)
    case roleSizeMismatch(String, axis: Int, size: Int, expected: Int)

    public var description: String {
        switch self {
        case .noAxisRoles(let name):
            return "tensor \"\(name)\": no axis roles known, so pruning cannot tell which of its axes to cut"
        case .roleSizeMismatch(let name, let axis, let size, let expected):
            return "tensor \"\(name)\": axis \(axis) has \(size) entries, its role needs \(expected)"
        }
    }
}

extension ViTConfig {
    /// Every parameter (in `parameterSpecs()` order) with the role of each axis. Checked against the shapes: a
    /// residual axis has `residualWidth` entries, a q/k/v axis `qkvRows`, and so on.
    public func parameterAxes() throws -> [ParameterAxes] {
        try parameterSpecs().map { spec in
            guard let roles = Self.roles(of: spec.name) else { throw ChannelSpaceError.noAxisRoles(spec.name) }
            guard roles.count == spec.shape.count else { throw ChannelSpaceError.noAxisRoles(spec.name) }
            for (axis, role) in roles.enumerated() {
                guard let expected = size(of: role) else { continue }
                if spec.shape[axis] != expected {
                    throw ChannelSpaceError.roleSizeMismatch(spec.name, axis: axis, size: spec.shape[axis],
                                                             expected: expected)
                }
            }
            return ParameterAxes(name: spec.name, shape: spec.shape, roles: roles)
        }
    }

    /// Entries along an axis of this role (nil for `fixed`, whose size the role does not determine).
    func size(of role: AxisRole) -> Int? {
        switch role {
        case .residual: return residualWidth
        case .qkvFeatures(let b): return blocks[b].qkvRows
        case .mergedValues(let b): return blocks[b].attentionWidth
        case .mlpHidden(let b): return blocks[b].mlpHidden
        case .fixed: return nil
        }
    }

    /// The role table, by timm name. Shapes as in `parameterSpecs()`.
    static func roles(of name: String) -> [AxisRole]? {
        switch name {
        case "cls_token", "dist_token", "pos_embed": return [.fixed, .fixed, .residual]  // [1, 1|tokens, D]
        case "patch_embed.proj.weight": return [.residual, .fixed, .fixed, .fixed]      // [D, C, P, P]
        case "patch_embed.proj.bias": return [.residual]
        case "norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias": return [.residual]
        case "head.weight", "head_dist.weight": return [.fixed, .residual]              // [classes, D]
        case "head.bias", "head_dist.bias": return [.fixed]
        default: break
        }
        // blocks.<b>.<rest>
        let parts = name.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blocks", let b = Int(parts[1]) else { return nil }
        switch parts[2] {
        case "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias": return [.residual]
        case "attn.qkv.weight": return [.qkvFeatures(block: b), .residual]               // [qkvRows, D]
        case "attn.qkv.bias": return [.qkvFeatures(block: b)]
        case "attn.proj.weight": return [.residual, .mergedValues(block: b)]             // [D, heads·vDim]
        case "attn.proj.bias": return [.residual]
        case "mlp.fc1.weight": return [.mlpHidden(block: b), .residual]                  // [M, D]
        case "mlp.fc1.bias": return [.mlpHidden(block: b)]
        case "mlp.fc2.weight": return [.residual, .mlpHidden(block: b)]                  // [D, M]
        case "mlp.fc2.bias": return [.residual]
        default: return nil
        }
    }
}
