import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// CPD's importance (METHODS.md §4.b): for every channel group, the empirical Fisher of a virtual multiplicative
/// mask on all of the group's parameter slices. Scaling every slice of group g by m makes
/// `∂L/∂m |m=1 = Σ_slices Σ_e w_e·∂L/∂w_e`, so the score needs only the weight gradients the backward already
/// produced: no mask in the forward, no extra pass. Each step adds `(∂L/∂m)²`; `normalized` divides by CPD's memory
/// proxy.
///
/// On the device, `w·∂L/∂w` is reduced along every role axis (`Backend.maskGradient` for a last axis,
/// `maskGradientRows` for a first one) into one buffer per role: a residual channel's entry sums its slices in
/// every tensor at once. Only those per-role sums (a few thousand floats) come to the host, where each group adds
/// the entries of its roles (a q/k dim: its q row and its k row) and squares.
final class FisherScores {
    let config: ViTConfig
    /// The spaces scored: residual, and per block q/k dims, v dims and MLP neurons (CPD never removes heads).
    let spaces: [ChannelSpace]
    /// Σ over steps of (∂L/∂m)², per space and group.
    private(set) var accumulated: [SpaceKind: [Double]]
    private(set) var steps = 0

    private let backend: Backend
    private struct Reduction {
        var tensor: String
        var role: AxisRole
        var rows: Int
        var cols: Int
        /// The role is the tensor's first axis (rows); otherwise its last (columns).
        var alongRows: Bool
    }
    private let reductions: [Reduction]
    private let roleBuffers: [AxisRole: Buffer]
    /// Per space and group: the (role, index) entries whose sum is the group's mask derivative.
    private let members: [SpaceKind: [[(AxisRole, Int)]]]

    init(config: ViTConfig, backend: Backend) throws {
        self.config = config
        self.backend = backend
        spaces = try config.channelSpaces().filter {
            if case .heads = $0.kind { return false }
            return true
        }
        var reductions: [Reduction] = []
        var sizes: [AxisRole: Int] = [:]
        var rolesByTensor: [String: [AxisRole]] = [:]
        for parameter in try config.parameterAxes() {
            rolesByTensor[parameter.name] = parameter.roles
            let count = parameter.shape.reduce(1, *)
            for (axis, role) in parameter.roles.enumerated() where role != .fixed {
                let size = parameter.shape[axis]
                sizes[role] = size
                guard count > 0 else { continue }
                // Every prunable axis of a ViT tensor is its first or its last (ChannelSpaces' table).
                let isLast = axis == parameter.shape.count - 1
                precondition(isLast || axis == 0, "\(parameter.name): role axis \(axis) is neither first nor last")
                reductions.append(Reduction(tensor: parameter.name, role: role, rows: isLast ? count / size : size,
                                            cols: isLast ? size : count / size, alongRows: !isLast))
            }
        }
        self.reductions = reductions
        var buffers: [AxisRole: Buffer] = [:]
        for (role, size) in sizes where size > 0 { buffers[role] = try backend.zeros(size) }
        roleBuffers = buffers
        var members: [SpaceKind: [[(AxisRole, Int)]]] = [:]
        var accumulated: [SpaceKind: [Double]] = [:]
        for space in spaces {
            members[space.kind] = space.groups.map { group in
                var seen = Set<String>(), entries: [(AxisRole, Int)] = []
                for slice in group.slices {
                    guard let role = rolesByTensor[slice.tensor]?[slice.axis] else { continue }
                    for index in slice.indices where seen.insert("\(role)#\(index)").inserted {
                        entries.append((role, index))
                    }
                }
                return entries
            }
            accumulated[space.kind] = [Double](repeating: 0, count: space.groups.count)
        }
        self.members = members
        self.accumulated = accumulated
    }

    /// This step's `∂L/∂m` of every group, from the model's current weights and gradients (call after the
    /// backward, before the optimizer changes either).
    func maskDerivatives(of model: VisionTransformer) throws -> [SpaceKind: [Double]] {
        precondition(model.config == config, "Fisher scores of another shape")
        for buffer in roleBuffers.values { try backend.fill(buffer, value: 0, offset: 0, count: buffer.count) }
        for reduction in reductions {
            guard let weight = model.parameters[reduction.tensor], let gradient = model.gradients[reduction.tensor],
                  let target = roleBuffers[reduction.role] else { continue }
            if reduction.alongRows {
                try backend.maskGradientRows(x: weight, dY: gradient, dMask: target, rows: reduction.rows,
                                             cols: reduction.cols)
            } else {
                try backend.maskGradient(x: weight, dY: gradient, dMask: target, rows: reduction.rows,
                                         cols: reduction.cols)
            }
        }
        var sums: [AxisRole: [Float]] = [:]
        for (role, buffer) in roleBuffers { sums[role] = try backend.read(buffer, count: buffer.count) }
        var derivatives: [SpaceKind: [Double]] = [:]
        for space in spaces {
            derivatives[space.kind] = (members[space.kind] ?? []).map { entries in
                entries.reduce(0.0) { $0 + Double(sums[$1.0]?[$1.1] ?? 0) }
            }
        }
        return derivatives
    }

    /// Adds this step's squared mask derivatives.
    func accumulate(_ model: VisionTransformer) throws {
        for (kind, values) in try maskDerivatives(of: model) {
            guard var total = accumulated[kind] else { continue }
            for i in total.indices { total[i] += values[i] * values[i] }
            accumulated[kind] = total
        }
        steps += 1
    }

    /// CPD's group score per channel: the accumulated Fisher divided by the memory proxy of the module that
    /// produces the channel (tokens × its active width: CPD's output activations per image) and by the number of
    /// tensors the group spans (CPD's `|out_group| + |out_in_group|`).
    func normalized() -> [SpaceKind: [Double]] {
        var result: [SpaceKind: [Double]] = [:]
        for space in spaces {
            let width: Int
            switch space.kind {
            case .residual: width = config.residualWidth
            case .mlpHidden(let b): width = config.blocks[b].mlpHidden
            case .qkDims(let b), .vDims(let b), .heads(let b): width = config.blocks[b].qkvRows
            }
            let tensors = max(1, space.groups.first?.slices.count ?? 1)
            let divisor = Double(config.tokens * max(width, 1) * tensors)
            result[space.kind] = (accumulated[space.kind] ?? []).map { $0 / divisor }
        }
        return result
    }

    /// The state a checkpoint needs (the shapes come from the model).
    var saved: SavedState { SavedState(steps: steps, accumulated: spaces.map { accumulated[$0.kind] ?? [] }) }

    func restore(_ state: SavedState) throws {
        guard state.accumulated.count == spaces.count,
              zip(state.accumulated, spaces).allSatisfy({ $0.count == $1.groups.count }) else {
            throw PruneError.planMismatch("saved Fisher scores do not fit the model's channel spaces")
        }
        for (values, space) in zip(state.accumulated, spaces) { accumulated[space.kind] = values }
        steps = state.steps
    }

    /// Float64 sums in JSON: Swift writes the shortest text that reads back to the same bits, so a resumed run
    /// continues with exactly these scores.
    struct SavedState: Codable, Equatable {
        var steps: Int
        var accumulated: [[Double]]
    }
}
