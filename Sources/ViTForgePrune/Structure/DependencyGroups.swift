import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

/// A family of channels that can be pruned independently of the others: removing one group of a space never forces
/// a change in another space.
public enum SpaceKind: Hashable, Sendable, CustomStringConvertible {
    /// The residual stream's channels (one space for the whole model).
    case residual
    /// Whole heads of block `b`.
    case heads(block: Int)
    /// One q/k dim of one head of block `b` (q and k rows at the same position meet in `q·kᵀ`).
    case qkDims(block: Int)
    /// One v dim of one head of block `b` (the v row and the `attn.proj` column it feeds).
    case vDims(block: Int)
    /// One hidden neuron of block `b`'s MLP.
    case mlpHidden(block: Int)

    public var block: Int? {
        switch self {
        case .residual: return nil
        case .heads(let b), .qkDims(let b), .vDims(let b), .mlpHidden(let b): return b
        }
    }

    public var description: String {
        switch self {
        case .residual: return "residual"
        case .heads(let b): return "blocks.\(b).heads"
        case .qkDims(let b): return "blocks.\(b).qkDims"
        case .vDims(let b): return "blocks.\(b).vDims"
        case .mlpHidden(let b): return "blocks.\(b).mlpHidden"
        }
    }
}

/// Indices along one axis of one tensor.
public struct ChannelSlice: Equatable, Sendable {
    public var tensor: String
    public var axis: Int
    public var indices: [Int]
}

/// Slices that must be removed together (DepGraph's group, CPD's "comb").
public struct ChannelGroup: Equatable, Sendable {
    /// The group's index in its space: the channel, head, neuron, or `head·dim + d` for q/k and v dims.
    public var index: Int
    /// For q/k and v dims: the head the dim belongs to.
    public var head: Int?
    public var slices: [ChannelSlice]

    /// Scalars the group holds across all its slices (needs the shapes).
    public func elementCount(shapes: [String: [Int]]) -> Int {
        slices.reduce(0) { total, slice in
            let shape = shapes[slice.tensor] ?? []
            let others = shape.enumerated().reduce(1) { $0 * ($1.offset == slice.axis ? 1 : $1.element) }
            return total + others * slice.indices.count
        }
    }
}

public struct ChannelSpace: Equatable, Sendable {
    public var kind: SpaceKind
    public var groups: [ChannelGroup]
}

extension ViTConfig {
    /// Every channel space of this model with its groups, derived from `parameterAxes()`: a space's groups are the
    /// index sets along every axis whose role the space owns. The role table is first checked against the groups
    /// CPD's rules derive from the layer graph (`Comb`). Order: residual, then per block heads, q/k dims,
    /// v dims, MLP hidden.
    public func channelSpaces() throws -> [ChannelSpace] {
        try checkRoleTableAgainstComb()
        let axes = try parameterAxes()
        // (tensor, axis) pairs per role, in parameter order.
        var pairs: [AxisRole: [(String, Int)]] = [:]
        for parameter in axes {
            for (axis, role) in parameter.roles.enumerated() where role != .fixed {
                pairs[role, default: []].append((parameter.name, axis))
            }
        }
        func slices(_ role: AxisRole, _ indices: [Int]) -> [ChannelSlice] {
            (pairs[role] ?? []).map { ChannelSlice(tensor: $0.0, axis: $0.1, indices: indices) }
        }

        var spaces = [ChannelSpace(kind: .residual, groups: (0..<residualWidth).map {
            ChannelGroup(index: $0, head: nil, slices: slices(.residual, [$0]))
        })]
        for (b, block) in blocks.enumerated() {
            let layout = QKVLayout(block)
            let qkv = AxisRole.qkvFeatures(block: b)
            let merged = AxisRole.mergedValues(block: b)
            spaces.append(ChannelSpace(kind: .heads(block: b), groups: (0..<block.heads).map { h in
                let rows = (0..<layout.qkDims[h]).map { layout.qRow(head: h, dim: $0) }
                    + (0..<layout.qkDims[h]).map { layout.kRow(head: h, dim: $0) }
                    + (0..<layout.vDims[h]).map { layout.vRow(head: h, dim: $0) }
                let columns = (0..<layout.vDims[h]).map { layout.mergedColumn(head: h, dim: $0) }
                return ChannelGroup(index: h, head: nil, slices: slices(qkv, rows) + slices(merged, columns))
            }))
            spaces.append(ChannelSpace(kind: .qkDims(block: b), groups: (0..<block.heads).flatMap { h in
                (0..<layout.qkDims[h]).map { d in
                    ChannelGroup(index: layout.qkOffsets[h] + d, head: h,
                                 slices: slices(qkv, [layout.qRow(head: h, dim: d), layout.kRow(head: h, dim: d)]))
                }
            }))
            spaces.append(ChannelSpace(kind: .vDims(block: b), groups: (0..<block.heads).flatMap { h in
                (0..<layout.vDims[h]).map { d in
                    ChannelGroup(index: layout.vOffsets[h] + d, head: h,
                                 slices: slices(qkv, [layout.vRow(head: h, dim: d)])
                                     + slices(merged, [layout.mergedColumn(head: h, dim: d)]))
                }
            }))
            spaces.append(ChannelSpace(kind: .mlpHidden(block: b), groups: (0..<block.mlpHidden).map {
                ChannelGroup(index: $0, head: nil, slices: slices(.mlpHidden(block: b), [$0]))
            }))
        }
        // A block without heads has no head, q/k or v groups: no empty space is listed.
        return spaces.filter { !$0.groups.isEmpty }
    }

    /// What `vitforge groups` prints: per space, how many groups and what one group holds (its first group's
    /// slices, indices written as ranges), so the coupling can be read off without listing every channel.
    public func channelSpaceDescription(allGroups: Bool = false) throws -> String {
        let spaces = try channelSpaces()
        let shapes = Dictionary(uniqueKeysWithValues: parameterSpecs().map { ($0.name, $0.shape) })
        var lines = ["\(spaces.count) channel spaces; residual width \(residualWidth), \(depth) blocks"]
        for space in spaces {
            // Heads of different widths hold different numbers of scalars: the range is printed then.
            let counts = space.groups.map { $0.elementCount(shapes: shapes) }
            let (fewest, most) = (counts.min() ?? 0, counts.max() ?? 0)
            let elements = fewest == most ? "\(most)" : "\(fewest)–\(most)"
            lines.append("\(space.kind): \(space.groups.count) groups, \(elements) scalars per group")
            let shown = allGroups ? space.groups : Array(space.groups.prefix(1))
            for group in shown {
                let head = group.head.map { " (head \($0))" } ?? ""
                lines.append("  group \(group.index)\(head):")
                for slice in group.slices {
                    lines.append("    \(slice.tensor) axis \(slice.axis) [\(Self.rangeText(slice.indices))]")
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    /// `0..<4, 9, 12..<14`: runs of consecutive indices as half-open ranges.
    static func rangeText(_ indices: [Int]) -> String {
        var parts: [String] = []
        var start = 0
        while start < indices.count {
            var end = start
            while end + 1 < indices.count && indices[end + 1] == indices[end] + 1 { end += 1 }
            parts.append(end == start ? "\(indices[start])" : "\(indices[start])..<\(indices[end] + 1)")
            start = end + 1
        }
        return parts.joined(separator: ", ")
    }
}
