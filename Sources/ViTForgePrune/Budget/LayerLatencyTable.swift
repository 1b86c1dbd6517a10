import Foundation
import ViTForgeDevice
import ViTForgeFormats

/// Measured latencies of one model's layers at the widths a pruned model of it can have, on one device
/// (`vitforge bench --latency-table T`): what `--round-to table` rounds kept widths with (`WidthRounding`).
/// Linear layers are keyed by (rows, in-width, out-width) with rows = batch · tokens, attention's fused core by
/// (heads, per-head q/k width, per-head v width) at the model's token count; both at the table's batch. Only the
/// widths measured are candidates: nothing is interpolated.
public struct LayerLatencyTable: Codable, Equatable, Sendable {
    public static let formatName = "vitforge.layer_latency_table"
    public static let currentVersion = 1

    /// The shape of the model the table was measured for (the parent every pruned width is a part of).
    public struct ParentShape: Codable, Equatable, Sendable {
        public var tokens: Int
        public var width: Int
        public var blocks: [Block]

        public struct Block: Codable, Equatable, Sendable {
            public var heads: Int
            public var qkDim: Int
            public var vDim: Int
            public var mlpHidden: Int

            enum CodingKeys: String, CodingKey {
                case heads
                case qkDim = "qk_dim"
                case vDim = "v_dim"
                case mlpHidden = "mlp_hidden"
            }

            public init(heads: Int, qkDim: Int, vDim: Int, mlpHidden: Int) {
                self.heads = heads
                self.qkDim = qkDim
                self.vDim = vDim
                self.mlpHidden = mlpHidden
            }
        }

        public init(tokens: Int, width: Int, blocks: [Block]) {
            self.tokens = tokens
            self.width = width
            self.blocks = blocks
        }

        /// The shape of `config`; a block whose heads differ in width has no table (the per-head widths are what
        /// the table varies).
        public init(_ config: ViTConfig) throws {
            var blocks: [Block] = []
            for (b, block) in config.blocks.enumerated() {
                guard Set(block.qkDims).count <= 1, Set(block.vDims).count <= 1 else {
                    throw PruneError.invalidBudget("block \(b) has heads of different widths; a latency table needs "
                                                   + "every head of a block as wide as the others")
                }
                blocks.append(Block(heads: block.heads, qkDim: block.qkDims.first ?? 0,
                                    vDim: block.vDims.first ?? 0, mlpHidden: block.mlpHidden))
            }
            self.init(tokens: config.tokens, width: config.residualWidth, blocks: blocks)
        }

        /// One line: `tokens 16, width 128, 4 blocks: 4 heads × 32/32, MLP 256`.
        public var summary: String {
            var groups: [(Block, Int)] = []
            for block in blocks {
                if let last = groups.last, last.0 == block {
                    groups[groups.count - 1].1 += 1
                } else {
                    groups.append((block, 1))
                }
            }
            return "tokens \(tokens), width \(width), " + groups.map { block, count in
                "\(count) block\(count == 1 ? "" : "s"): \(block.heads) heads × \(block.qkDim)/\(block.vDim), "
                    + "MLP \(block.mlpHidden)"
            }.joined(separator: "; ")
        }
    }

    /// The machine that measured: the backend's name (threads included), the CPU's model, OpenBLAS's core.
    public struct Device: Codable, Equatable, Sendable {
        public var backend: String
        public var cpu: String
        public var blasCore: String

        enum CodingKeys: String, CodingKey {
            case backend, cpu
            case blasCore = "blas_core"
        }

        public init(backend: String, cpu: String, blasCore: String) {
            self.backend = backend
            self.cpu = cpu
            self.blasCore = blasCore
        }

        /// This process's device for `backend`.
        public init(current backend: Backend) {
            self.init(backend: backend.name, cpu: CPUModel.name, blasCore: OpenBLAS.coreName)
        }

        public var summary: String { "\(backend) on \(cpu), OpenBLAS core \(blasCore)" }
    }

    public struct LinearKey: Codable, Hashable, Sendable {
        public var rows: Int
        public var inWidth: Int
        public var outWidth: Int

        enum CodingKeys: String, CodingKey {
            case rows
            case inWidth = "in"
            case outWidth = "out"
        }

        public init(rows: Int, inWidth: Int, outWidth: Int) {
            self.rows = rows
            self.inWidth = inWidth
            self.outWidth = outWidth
        }
    }

    public struct AttentionKey: Codable, Hashable, Sendable {
        public var heads: Int
        public var qkDim: Int
        public var vDim: Int

        enum CodingKeys: String, CodingKey {
            case heads
            case qkDim = "qk_dim"
            case vDim = "v_dim"
        }

        public init(heads: Int, qkDim: Int, vDim: Int) {
            self.heads = heads
            self.qkDim = qkDim
            self.vDim = vDim
        }
    }

    /// One measured shape and its median milliseconds: a linear layer (GEMM and bias) or attention's fused core
    /// over the batch.
    public struct Entry<Key: Codable & Hashable & Sendable>: Codable, Equatable, Sendable {
        public var key: Key
        public var milliseconds: Double

        enum CodingKeys: String, CodingKey {
            case key = "shape"
            case milliseconds = "ms"
        }

        public init(_ key: Key, milliseconds: Double) {
            self.key = key
            self.milliseconds = milliseconds
        }
    }

    public typealias LinearEntry = Entry<LinearKey>
    public typealias AttentionEntry = Entry<AttentionKey>

    public var format = LayerLatencyTable.formatName
    public var version = LayerLatencyTable.currentVersion
    public var device: Device
    public var batch: Int
    public var parent: ParentShape
    /// Which widths were measured, in words (for whoever reads the file).
    public var widths: String
    /// Timed rounds per entry (the entries alternate within each round); each entry is their median.
    public var rounds: Int
    public var linear: [LinearEntry]
    public var attention: [AttentionEntry]

    enum CodingKeys: String, CodingKey {
        case format, version, device, batch, parent, widths, rounds, linear, attention
    }

    public init(device: Device, batch: Int, parent: ParentShape, widths: String, rounds: Int,
                linear: [LinearEntry], attention: [AttentionEntry]) {
        self.device = device
        self.batch = batch
        self.parent = parent
        self.widths = widths
        self.rounds = rounds
        self.linear = linear
        self.attention = attention
        index()
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decode(String.self, forKey: .format)
        version = try container.decode(Int.self, forKey: .version)
        device = try container.decode(Device.self, forKey: .device)
        batch = try container.decode(Int.self, forKey: .batch)
        parent = try container.decode(ParentShape.self, forKey: .parent)
        widths = try container.decode(String.self, forKey: .widths)
        rounds = try container.decode(Int.self, forKey: .rounds)
        linear = try container.decode([LinearEntry].self, forKey: .linear)
        attention = try container.decode([AttentionEntry].self, forKey: .attention)
        index()
    }

    private var linearMilliseconds: [LinearKey: Double] = [:]
    private var attentionMilliseconds: [AttentionKey: Double] = [:]

    private mutating func index() {
        linearMilliseconds = Dictionary(linear.map { ($0.key, $0.milliseconds) }, uniquingKeysWith: { a, _ in a })
        attentionMilliseconds = Dictionary(attention.map { ($0.key, $0.milliseconds) },
                                           uniquingKeysWith: { a, _ in a })
    }

    public static func == (lhs: LayerLatencyTable, rhs: LayerLatencyTable) -> Bool {
        lhs.format == rhs.format && lhs.version == rhs.version && lhs.device == rhs.device && lhs.batch == rhs.batch
            && lhs.parent == rhs.parent && lhs.widths == rhs.widths && lhs.rounds == rhs.rounds
            && lhs.linear == rhs.linear && lhs.attention == rhs.attention
    }

    public var rows: Int { batch * parent.tokens }

    // MARK: What a width costs

    /// The measured milliseconds of one linear layer's shape (nil: not measured).
    public func milliseconds(_ key: LinearKey) -> Double? { linearMilliseconds[key] }

    /// The measured milliseconds of one attention core's shape (nil: not measured).
    public func milliseconds(_ key: AttentionKey) -> Double? { attentionMilliseconds[key] }

    /// The table's latency of the layers whose cost depends on a width of `kind` when it is `width` and every
    /// other width of the block stays the parent's (nil: not measured, or a kind the table does not cover):
    /// MLP neurons: fc1 and fc2; a head's q/k dims: qkv and the attention core; a head's v dims: qkv, the core and
    /// proj. Head counts and the residual width are not covered.
    public func milliseconds(_ kind: SpaceKind, width: Int) -> Double? {
        guard let b = kind.block, parent.blocks.indices.contains(b), width >= 1 else { return nil }
        let block = parent.blocks[b], d = parent.width, r = rows
        func linear(_ inWidth: Int, _ outWidth: Int) -> Double? {
            linearMilliseconds[LinearKey(rows: r, inWidth: inWidth, outWidth: outWidth)]
        }
        func core(_ qk: Int, _ v: Int) -> Double? {
            attentionMilliseconds[AttentionKey(heads: block.heads, qkDim: qk, vDim: v)]
        }
        func sum(_ parts: [Double?]) -> Double? {
            parts.contains { $0 == nil } ? nil : parts.reduce(0) { $0 + ($1 ?? 0) }
        }
        switch kind {
        case .mlpHidden:
            return sum([linear(d, width), linear(width, d)])
        case .qkDims:
            return sum([linear(d, block.heads * (2 * width + block.vDim)), core(width, block.vDim)])
        case .vDims:
            return sum([linear(d, block.heads * (2 * block.qkDim + width)), core(block.qkDim, width),
                        linear(block.heads * width, d)])
        case .residual, .heads:
            return nil
        }
    }

    /// Every linear and attention shape `milliseconds` reads for `parent` at `batch` over `widths(maximum)` (the
    /// widths to measure below each parent width): what `bench --latency-table` times.
    public static func shapes(parent: ParentShape, batch: Int, widths: (Int) -> [Int])
        -> (linear: [LinearKey], attention: [AttentionKey]) {
        var linear: [LinearKey] = [], attention: [AttentionKey] = []
        var seenLinear = Set<LinearKey>(), seenAttention = Set<AttentionKey>()
        let rows = batch * parent.tokens, d = parent.width
        func add(_ inWidth: Int, _ outWidth: Int) {
            let key = LinearKey(rows: rows, inWidth: inWidth, outWidth: outWidth)
            if seenLinear.insert(key).inserted { linear.append(key) }
        }
        func add(heads: Int, _ qk: Int, _ v: Int) {
            let key = AttentionKey(heads: heads, qkDim: qk, vDim: v)
            if seenAttention.insert(key).inserted { attention.append(key) }
        }
        for block in parent.blocks {
            for w in widths(block.mlpHidden) {
                add(d, w)
                add(w, d)
            }
            for w in widths(block.qkDim) {
                add(d, block.heads * (2 * w + block.vDim))
                add(heads: block.heads, w, block.vDim)
            }
            for w in widths(block.vDim) {
                add(d, block.heads * (2 * block.qkDim + w))
                add(heads: block.heads, block.qkDim, w)
                add(block.heads * w, d)
            }
        }
        return (linear, attention)
    }

    // MARK: File

    /// The file's text (pretty-printed, sorted keys).
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(UInt8(ascii: "\n"))
        return data
    }

    /// Reads the table at `path` for a run that prunes a model of shape `config` on `device`, refusing (one line
    /// naming the file) a file that is not a table, a table of another model shape, or one measured on another
    /// device: its latencies would round the widths for a machine the run is not on.
    public static func load(path: String, for config: ViTConfig, on device: Device) throws -> LoadedLatencyTable {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw LatencyTableError(path, "cannot read it (\((error as NSError).localizedDescription))")
        }
        let table: LayerLatencyTable
        do { table = try JSONDecoder().decode(LayerLatencyTable.self, from: data) } catch {
            throw LatencyTableError(path, "not a latency table (\(Self.decodingProblem(error))); make one with "
                                    + "`vitforge bench --model M --latency-table \(path)`")
        }
        guard table.format == formatName, table.version == currentVersion else {
            throw LatencyTableError(path, "format \(table.format) version \(table.version), expected \(formatName) "
                                    + "version \(currentVersion)")
        }
        guard table.batch >= 1, table.rounds >= 1,
              table.linear.allSatisfy({ $0.milliseconds.isFinite && $0.milliseconds >= 0 }),
              table.attention.allSatisfy({ $0.milliseconds.isFinite && $0.milliseconds >= 0 })
        else { throw LatencyTableError(path, "a batch or rounds below 1, or a latency that is negative or not finite") }
        let shape: ParentShape
        do { shape = try ParentShape(config) } catch { throw LatencyTableError(path, "\(error)") }
        guard shape == table.parent else {
            throw LatencyTableError(path, "measured for another model shape (\(table.parent.summary)); this model: "
                                    + shape.summary)
        }
        guard device == table.device else {
            // Same CPU and core, another backend name: the GEMM library (or thread count) differs; a table measured
            // before oneDNN became the default names OpenBLAS.
            let sameMachine = device.cpu == table.device.cpu && device.blasCore == table.device.blasCore
            let hint = sameMachine && table.device.backend.hasPrefix("cpu (OpenBLAS,")
                ? " (measure it again with `vitforge bench --latency-table`, or run with VITFORGE_GEMM=openblas as "
                    + "when it was measured)"
                : " (measure it again on this device with `vitforge bench --latency-table`)"
            throw LatencyTableError(path, "measured on another device (\(table.device.summary)); this run: "
                                    + device.summary + hint)
        }
        var hasher = FNV1a64()
        hasher.combine(data)
        return LoadedLatencyTable(table: table, path: path,
                                  hash: "fnv1a64:" + String(hasher.value, radix: 16).leftPadded(to: 16))
    }

    private static func decodingProblem(_ error: Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .dataCorrupted(let context): return "invalid JSON" + location(context)
        case .keyNotFound(let key, let context): return "no \"\(key.stringValue)\"" + location(context)
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "wrong type" + location(context)
        @unknown default: return "\(error)"
        }
    }

    private static func location(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        return path.isEmpty ? "" : " at \(path)"
    }
}

/// A table as a run read it: the file and its hash go into the prune report.
public struct LoadedLatencyTable: Equatable, Sendable {
    public var table: LayerLatencyTable
    public var path: String
    /// FNV-1a (64 bits) of the file's bytes, `fnv1a64:` and 16 hex digits.
    public var hash: String

    public init(table: LayerLatencyTable, path: String, hash: String) {
        self.table = table
        self.path = path
        self.hash = hash
    }
}

/// A latency table file that cannot be used: the file and the problem, in one line.
public struct LatencyTableError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String

    public init(_ path: String, _ problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { "--latency-table \(path): \(problem)" }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
