import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// CPD's "comb" (METHODS.md §4.b) on the layer graph ViTForge owns: the forward pass written down as operations on
/// channel axes, and the dependency groups derived from it by CPD's rules instead of being listed by hand.
///
/// - **Coupling operations** force equal channel indices on their operands: residual adds, the class/position
///   token concat and add, LayerNorm (its γ, β ride on the channels it normalises), elementwise GELU, `q·kᵀ`
///   (contracts q's and k's dim axes together) and `attention·v` (v's dim axis carries through to the output).
/// - **Stop operations** consume a channel space as an input contraction: every linear layer (and the patch
///   convolution) ends the space it reads — its input axis joins the group as a *consumer* (CPD's `out_in_group`)
///   and its output axis starts (or joins) another group (CPD's `out_group`).
/// - Reshapes carry axes: the fused qkv output splits into its q, k and v parts (`QKVLayout`), the heads' merge
///   feeds `attn.proj`.
///
/// Groups are the classes of a union-find over axes; a class that reaches the pixels or the logits is not
/// prunable. `ViTConfig.channelSpaces()` checks that the hand-written role table (`parameterAxes()`) partitions
/// the parameters exactly as these derived groups do, so the two cannot drift apart.
public enum Comb {
    /// Which rows of a fused qkv tensor an axis reference means (nil: the whole axis).
    public enum QKVPart: String, Sendable, Comparable {
        case q, k, v
        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// One parameter axis (for `attn.qkv`'s output axis, one of its parts).
    public struct AxisRef: Hashable, Sendable, Comparable, CustomStringConvertible {
        public var tensor: String
        public var axis: Int
        public var part: QKVPart?

        public static func < (a: Self, b: Self) -> Bool {
            (a.tensor, a.axis, a.part?.rawValue ?? "") < (b.tensor, b.axis, b.part?.rawValue ?? "")
        }

        public var description: String { "\(tensor)[\(axis)\(part.map { ":\($0.rawValue)" } ?? "")]" }
    }

    /// A derived group: the parameter axes that carry its channels and those that consume them.
    public struct Group: Equatable, Sendable {
        /// The channel space this group is (named after the role table's space it must equal).
        public var family: SpaceFamily
        /// The block for per-block groups.
        public var block: Int?
        /// Axes that produce or carry the channels (CPD's `out_group`).
        public var carriers: [AxisRef]
        /// Input axes of the stop operations that read them (CPD's `out_in_group`).
        public var consumers: [AxisRef]

        public var members: [AxisRef] { carriers + consumers }

        public var name: String { block.map { "blocks.\($0).\(family.rawValue)" } ?? family.rawValue }
    }

    /// The groups of `config`'s graph, residual first, then per block q/k dims, v dims and MLP hidden neurons.
    public static func groups(of config: ViTConfig) throws -> [Group] {
        var graph = Graph(config)
        var byRoot: [Int: (carriers: [AxisRef], consumers: [AxisRef], fixed: Bool)] = [:]
        for (node, id) in graph.ids {
            let root = graph.find(id)
            var entry = byRoot[root] ?? ([], [], false)
            switch node {
            case .parameter(let axis): entry.carriers.append(axis)
            case .activation(let name): entry.fixed = entry.fixed || Graph.fixedActivations.contains(name)
            }
            byRoot[root] = entry
        }
        for (axis, activation) in graph.consumers {
            byRoot[graph.find(graph.id(.activation(activation)))]?.consumers.append(axis)
        }
        var groups: [Group] = []
        for entry in byRoot.values where !entry.fixed && !entry.carriers.isEmpty {
            let carriers = entry.carriers.sorted(), consumers = entry.consumers.sorted()
            let (family, block) = try label(carriers + consumers)
            groups.append(Group(family: family, block: block, carriers: carriers, consumers: consumers))
        }
        let order: [SpaceFamily] = [.residual, .qkDims, .vDims, .mlpHidden]
        return groups.sorted {
            ($0.block ?? -1, order.firstIndex(of: $0.family) ?? 0) < ($1.block ?? -1, order.firstIndex(of: $1.family) ?? 0)
        }
    }

    /// The space a group's members belong to by the role table; an error when they disagree (the table would then
    /// couple what the graph does not, or miss a coupling).
    static func label(_ members: [AxisRef]) throws -> (SpaceFamily, Int?) {
        var labels = Set<String>()
        var result: (SpaceFamily, Int?)?
        for member in members {
            guard let roles = ViTConfig.roles(of: member.tensor), member.axis < roles.count else {
                throw ChannelSpaceError.noAxisRoles(member.tensor)
            }
            let label: (SpaceFamily, Int?)
            switch (roles[member.axis], member.part) {
            case (.residual, _): label = (.residual, nil)
            case (.mlpHidden(let b), _): label = (.mlpHidden, b)
            case (.qkvFeatures(let b), .q?), (.qkvFeatures(let b), .k?): label = (.qkDims, b)
            case (.qkvFeatures(let b), _), (.mergedValues(let b), _): label = (.vDims, b)
            case (.fixed, _): throw CombError.fixedAxisInGroup(member.description)
            }
            labels.insert("\(label.0.rawValue)\(label.1.map { "@\($0)" } ?? "")")
            result = label
        }
        guard labels.count == 1, let result else {
            throw CombError.mixedGroup(members.map(\.description).joined(separator: ", "))
        }
        return result
    }

    /// CPD's JSON form of the groups (`out_group`, `out_in_group` lists of `tensor[axis]`), for `vitforge groups
    /// --comb`.
    public static func json(_ groups: [Group]) -> String {
        func list(_ refs: [AxisRef]) -> String { "[" + refs.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        let entries = groups.map {
            "  {\"group\": \"\($0.name)\", \"out_group\": \(list($0.carriers)), \"out_in_group\": \(list($0.consumers))}"
        }
        return "[\n" + entries.joined(separator: ",\n") + "\n]"
    }

    /// The forward pass as axis operations, and the union-find over the axes.
    struct Graph {
        enum Node: Hashable {
            case parameter(AxisRef)
            /// The channel axis of an activation (tokens and batch axes never couple channels).
            case activation(String)
        }

        static let fixedActivations: Set<String> = ["pixels", "logits", "logits_dist"]

        private(set) var ids: [Node: Int] = [:]
        private var parent: [Int] = []
        /// Stop operations' input axes and the activation each reads.
        private(set) var consumers: [(AxisRef, String)] = []

        init(_ config: ViTConfig) {
            func p(_ tensor: String, _ axis: Int, _ part: QKVPart? = nil) -> Node {
                .parameter(AxisRef(tensor: tensor, axis: axis, part: part))
            }
            // Patch convolution: a stop op on the pixels, producing the patch tokens' channels.
            linear(weight: "patch_embed.proj.weight", bias: "patch_embed.proj.bias", input: "pixels",
                   output: "patch_tokens")
            // Prefix tokens concatenated along the token axis: the channel axis is shared.
            var tokenParts = ["patch_tokens"]
            if config.classToken { couple([.activation("cls"), p("cls_token", 2)]); tokenParts.append("cls") }
            if config.distillationToken { couple([.activation("dist"), p("dist_token", 2)]); tokenParts.append("dist") }
            couple(tokenParts.map { .activation($0) } + [.activation("tokens")])
            // Position embedding: an add.
            couple([.activation("tokens"), p("pos_embed", 2), .activation("stream.0")])
            for b in config.blocks.indices {
                let prefix = "blocks.\(b)."
                let stream = "stream.\(b)", mid = "stream.\(b).mid", next = "stream.\(b + 1)"
                layerNorm(prefix + "norm1", input: stream, output: prefix + "norm1.out")
                // qkv: one stop op whose output axis is three parts.
                for part in [QKVPart.q, .k, .v] {
                    let out = prefix + "attn.\(part.rawValue)"
                    couple([.activation(out), p(prefix + "attn.qkv.weight", 0, part)]
                           + (config.qkvBias ? [p(prefix + "attn.qkv.bias", 0, part)] : []))
                }
                consume(AxisRef(tensor: prefix + "attn.qkv.weight", axis: 1), prefix + "norm1.out")
                // q·kᵀ contracts q's and k's dims with each other (coupling, not stop).
                couple([.activation(prefix + "attn.q"), .activation(prefix + "attn.k")])
                // attention·v: v's dims carry to the heads' output, merged head-major for proj.
                couple([.activation(prefix + "attn.v"), .activation(prefix + "attn.merged")])
                linear(weight: prefix + "attn.proj.weight", bias: prefix + "attn.proj.bias",
                       input: prefix + "attn.merged", output: prefix + "attn.out")
                couple([.activation(stream), .activation(prefix + "attn.out"), .activation(mid)])  // residual add
                layerNorm(prefix + "norm2", input: mid, output: prefix + "norm2.out")
                linear(weight: prefix + "mlp.fc1.weight", bias: prefix + "mlp.fc1.bias", input: prefix + "norm2.out",
                       output: prefix + "mlp.pre")
                couple([.activation(prefix + "mlp.pre"), .activation(prefix + "mlp.hidden")])  // GELU
                linear(weight: prefix + "mlp.fc2.weight", bias: prefix + "mlp.fc2.bias", input: prefix + "mlp.hidden",
                       output: prefix + "mlp.out")
                couple([.activation(mid), .activation(prefix + "mlp.out"), .activation(next)])  // residual add
            }
            // Final norm, then the class token (or the mean of the patch tokens): pooling keeps the channel axis.
            layerNorm(config.finalNormName, input: "stream.\(config.depth)", output: "pooled")
            linear(weight: "head.weight", bias: "head.bias", input: "pooled", output: "logits")
            if config.distillationToken {
                linear(weight: "head_dist.weight", bias: "head_dist.bias", input: "pooled", output: "logits_dist")
            }
        }

        mutating func id(_ node: Node) -> Int {
            if let id = ids[node] { return id }
            let id = parent.count
            ids[node] = id
            parent.append(id)
            return id
        }

        func find(_ id: Int) -> Int {
            var root = id
            while parent[root] != root { root = parent[root] }
            return root
        }

        mutating func couple(_ nodes: [Node]) {
            // Register first: `find(id(node))` would read `parent` before `id` appended to it.
            let ids = nodes.map { id($0) }
            let roots = ids.map { find($0) }
            for root in roots.dropFirst() where root != roots[0] { parent[root] = roots[0] }
        }

        mutating func consume(_ axis: AxisRef, _ activation: String) {
            _ = id(.activation(activation))
            consumers.append((axis, activation))
        }

        /// A linear layer (or the patch convolution): consumes `input` on the weight's axis 1, produces `output` on
        /// axis 0 of the weight and the bias.
        mutating func linear(weight: String, bias: String, input: String, output: String) {
            couple([.activation(output), .parameter(AxisRef(tensor: weight, axis: 0)),
                    .parameter(AxisRef(tensor: bias, axis: 0))])
            consume(AxisRef(tensor: weight, axis: 1), input)
        }

        mutating func layerNorm(_ name: String, input: String, output: String) {
            couple([.activation(input), .activation(output), .parameter(AxisRef(tensor: name + ".weight", axis: 0)),
                    .parameter(AxisRef(tensor: name + ".bias", axis: 0))])
        }
    }
}

public enum CombError: Error, CustomStringConvertible, Equatable, Sendable {
    case fixedAxisInGroup(String)
    case mixedGroup(String)
    case tableDisagrees(String)

    public var description: String {
        switch self {
        case .fixedAxisInGroup(let axis): return "comb: \(axis) is coupled to prunable channels but its role is fixed"
        case .mixedGroup(let members): return "comb: one derived group spans several spaces of the role table: \(members)"
        case .tableDisagrees(let what): return "comb: the role table and the derived groups disagree: \(what)"
        }
    }
}

extension ViTConfig {
    /// Checks that the role table (`parameterAxes()`) partitions the parameter axes exactly as `Comb` derives them
    /// from the layer graph: every role's axes form one derived group and every derived group is one role's axes.
    public func checkRoleTableAgainstComb() throws {
        let derived = try Comb.groups(of: self)
        var fromGraph: [String: Set<Comb.AxisRef>] = [:]
        for group in derived {
            if fromGraph[group.name] != nil { throw CombError.tableDisagrees("two derived groups are \(group.name)") }
            fromGraph[group.name] = Set(group.members)
        }
        var fromTable: [String: Set<Comb.AxisRef>] = [:]
        for parameter in try parameterAxes() {
            for (axis, role) in parameter.roles.enumerated() {
                let refs: [(String, Comb.AxisRef)]
                switch role {
                case .fixed: continue
                case .residual:
                    refs = [("residual", Comb.AxisRef(tensor: parameter.name, axis: axis))]
                case .mlpHidden(let b):
                    refs = [("blocks.\(b).mlpHidden", Comb.AxisRef(tensor: parameter.name, axis: axis))]
                case .mergedValues(let b):
                    refs = [("blocks.\(b).vDims", Comb.AxisRef(tensor: parameter.name, axis: axis))]
                case .qkvFeatures(let b):
                    // The table keeps the fused axis whole; the graph splits it into its parts.
                    refs = [("blocks.\(b).qkDims", Comb.AxisRef(tensor: parameter.name, axis: axis, part: .q)),
                            ("blocks.\(b).qkDims", Comb.AxisRef(tensor: parameter.name, axis: axis, part: .k)),
                            ("blocks.\(b).vDims", Comb.AxisRef(tensor: parameter.name, axis: axis, part: .v))]
                }
                for (name, ref) in refs { fromTable[name, default: []].insert(ref) }
            }
        }
        for name in Set(fromGraph.keys).union(fromTable.keys).sorted() where fromGraph[name] != fromTable[name] {
            let onlyGraph = (fromGraph[name] ?? []).subtracting(fromTable[name] ?? []).sorted().map(\.description)
            let onlyTable = (fromTable[name] ?? []).subtracting(fromGraph[name] ?? []).sorted().map(\.description)
            throw CombError.tableDisagrees("\(name): graph only \(onlyGraph), table only \(onlyTable)")
        }
    }
}
