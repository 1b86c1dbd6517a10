import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeTestBasics
@testable import ViTForgePrune

/// `--round-to table`: the rounding rule on synthetic latencies, the table's composition per kind of width, its
/// file round trip and refusals. No clock is read here: every latency is made up.
struct LatencyTableTests {
    /// A latency table for `config` (made up, device of this process): a linear layer costs `in · out · 1e-6`
    /// times `cost` of its width other than the residual's, attention's core `heads · (qk + v) · 1e-3` times
    /// `cost(qk) · cost(v)`.
    static func syntheticTable(_ config: ViTConfig, batch: Int = 2, cost: @escaping (Int) -> Double) throws
        -> LayerLatencyTable {
        let parent = try LayerLatencyTable.ParentShape(config)
        let shapes = LayerLatencyTable.shapes(parent: parent, batch: batch) { Array(1 ... $0) }
        let linear = syntheticLinear(residual: parent.width, cost: cost), core = syntheticCore(cost: cost)
        return LayerLatencyTable(
            device: .init(current: CPUBackend()), batch: batch, parent: parent, widths: "every width", rounds: 1,
            linear: shapes.linear.map { .init($0, milliseconds: linear($0.inWidth, $0.outWidth)) },
            attention: shapes.attention.map { .init($0, milliseconds: core($0.heads, $0.qkDim, $0.vDim)) })
    }

    static func syntheticLinear(residual: Int, cost: @escaping (Int) -> Double) -> (Int, Int) -> Double {
        { i, o in Double(i * o) * 1e-6 * cost(i == residual ? o : i) }
    }

    static func syntheticCore(cost: @escaping (Int) -> Double) -> (Int, Int, Int) -> Double {
        { heads, qk, v in Double(heads * (qk + v)) * 1e-3 * cost(qk) * cost(v) }
    }

    static let fmVitB = Result { try ViTWeights.load(path: fixture("fm-vit-b.safetensors"), heads: 4).config }

    @Test("the rule: lowest latency per kept channel within reach below the count, the largest within 2%")
    func fastestWidthRule() {
        // Multiples of 12 cost 1 per channel, every other width 1.5.
        let twelves: (Int) -> Double? = { w in Double(w) * (w % 12 == 0 ? 1 : 1.5) }
        #expect(WidthRounding.fastestWidth(asked: 115, latency: twelves) == 108)
        #expect(WidthRounding.fastestWidth(asked: 108, latency: twelves) == 108)
        #expect(WidthRounding.fastestWidth(asked: 5, latency: twelves) == 5)  // nothing better in reach: as asked
        #expect(WidthRounding.fastestWidth(asked: 1, latency: twelves) == 1)
        // Never above the count asked, even when a larger width is faster.
        #expect(WidthRounding.fastestWidth(asked: 119, latency: twelves) == 108)
        // Within the 2% tolerance the largest wins; beyond it the faster one does.
        let slightly: (Int) -> Double? = { w in Double(w) * (w == 100 ? 0.99 : 1) }
        #expect(WidthRounding.fastestWidth(asked: 103, latency: slightly) == 103)
        let clearly: (Int) -> Double? = { w in Double(w) * (w == 100 ? 0.95 : 1) }
        #expect(WidthRounding.fastestWidth(asked: 103, latency: clearly) == 100)
        // Reach: max(8, count/8) below the count; a fast width further down is not taken.
        #expect(WidthRounding.tableReach(100) == 12 && WidthRounding.tableReach(20) == 8)
        let farBelow: (Int) -> Double? = { w in Double(w) * (w == 88 ? 0.5 : 1) }
        #expect(WidthRounding.fastestWidth(asked: 100, latency: farBelow) == 100)
        let justInReach: (Int) -> Double? = { w in Double(w) * (w == 89 ? 0.5 : 1) }
        #expect(WidthRounding.fastestWidth(asked: 100, latency: justInReach) == 89)
        // Unmeasured widths are no candidates; with none measured the count stays.
        #expect(WidthRounding.fastestWidth(asked: 50, latency: { $0 == 45 ? 1 : nil }) == 45)
        #expect(WidthRounding.fastestWidth(asked: 50, latency: { _ in nil }) == 50)
    }

    @Test("a table rounds MLP, q/k and v widths by the layers they change; heads and the residual stay")
    func tableRoundsEachKind() throws {
        let config = try Self.fmVitB.get()
        let table = try Self.syntheticTable(config) { $0 % 12 == 0 ? 1 : 1.5 }
        let rounding = WidthRounding.table(LoadedLatencyTable(table: table, path: "t.json", hash: "h"))
        #expect(rounding.rounded(115, size: 256, kind: .mlpHidden(block: 1)) == 108)
        #expect(rounding.rounded(300, size: 256, kind: .mlpHidden(block: 1)) == 252)  // the size caps the count
        #expect(rounding.rounded(0, size: 256, kind: .mlpHidden(block: 0)) == 1)
        // A head's q/k width w (4 heads of 32/32 at width 128): the qkv GEMM (out 4·(2w + 32)) and the core; its
        // v width: qkv (out 4·(64 + w)), the core and proj (in 4·w). Which width wins, from the same made-up costs.
        let twelves: (Int) -> Double = { $0 % 12 == 0 ? 1 : 1.5 }
        let linear = Self.syntheticLinear(residual: 128, cost: twelves), core = Self.syntheticCore(cost: twelves)
        let qk = WidthRounding.fastestWidth(asked: 30) { w in linear(128, 4 * (2 * w + 32)) + core(4, w, 32) }
        let v = WidthRounding.fastestWidth(asked: 30) { w in linear(128, 4 * (64 + w)) + core(4, 32, w) + linear(4 * w, 128) }
        #expect(rounding.rounded(30, size: 32, kind: .qkDims(block: 2)) == qk)
        #expect(rounding.rounded(30, size: 32, kind: .vDims(block: 3)) == v)
        #expect(qk != 30 && v != 30, "the made-up costs should move both (\(qk), \(v))")
        #expect(rounding.rounded(3, size: 4, kind: .heads(block: 0)) == 3)
        #expect(rounding.rounded(77, size: 128, kind: .residual) == 77)
        // The composition: fc1 + fc2 at the rows of the table's batch.
        #expect(table.milliseconds(.mlpHidden(block: 0), width: 7) == 2 * Double(128 * 7) * 1e-6 * 1.5)
        #expect(table.rows == 2 * config.tokens && table.linear.allSatisfy { $0.key.rows == table.rows })
        #expect(table.milliseconds(.mlpHidden(block: 0), width: 257) == nil)
    }

    @Test("the table file: JSON round trip, hash recorded; refusals name the file")
    func fileRoundTripAndRefusals() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let config = try Self.fmVitB.get()
        let table = try Self.syntheticTable(config) { Double($0 % 5 + 1) }
        let path = folder.path("table.json")
        try table.jsonData().write(to: URL(fileURLWithPath: path))
        let device = LayerLatencyTable.Device(current: CPUBackend())
        let loaded = try LayerLatencyTable.load(path: path, for: config, on: device)
        #expect(loaded.table == table)
        #expect(loaded.table.milliseconds(.vDims(block: 1), width: 9) == table.milliseconds(.vDims(block: 1), width: 9))
        #expect(loaded.path == path && loaded.hash.hasPrefix("fnv1a64:") && loaded.hash.count == 8 + 16)
        // Another model shape, another device, not a table, no file: one line naming the file.
        let other = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2).config
        var elsewhere = device
        elsewhere.cpu += " (another)"
        let garbage = folder.path("garbage.json")
        try Data("{\"format\": 3".utf8).write(to: URL(fileURLWithPath: garbage))
        let cases: [(String, ViTConfig, LayerLatencyTable.Device, String)] = [
            (path, other, device, "another model shape"), (path, config, elsewhere, "another device"),
            (garbage, config, device, "not a latency table"), (folder.path("missing.json"), config, device, "cannot read"),
        ]
        for (file, model, on, problem) in cases {
            let error = try #require(throws: LatencyTableError.self) {
                try LayerLatencyTable.load(path: file, for: model, on: on)
            }
            #expect(error.description.hasPrefix("--latency-table \(file): ") && error.description.contains(problem)
                    && !error.description.contains("\n"), "\(error)")
        }
    }

    @Test("a table measured on another GEMM library is refused: the backend's name says which library multiplied")
    func anotherGemmLibraryIsAnotherDevice() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let config = try Self.fmVitB.get()
        // Same CPU, same OpenBLAS core, same thread count: only the library behind the products differs. (No
        // product runs here, so this holds on a machine without oneDNN too.)
        func device(_ gemm: GemmSelection) -> LayerLatencyTable.Device {
            .init(current: CPUBackend(threads: 2, gemm: gemm))
        }
        let openBLAS = device(.pinned(.openblas))
        var table = try Self.syntheticTable(config) { Double($0 % 3 + 1) }
        table.device = openBLAS
        let path = folder.path("openblas-table.json")
        try table.jsonData().write(to: URL(fileURLWithPath: path))
        #expect(try LayerLatencyTable.load(path: path, for: config, on: openBLAS).table == table)
        for other in [GemmSelection.pinned(.onednn), .auto] {
            let elsewhere = device(other)
            #expect(elsewhere.cpu == openBLAS.cpu && elsewhere.blasCore == openBLAS.blasCore
                    && elsewhere.backend != openBLAS.backend, "\(elsewhere.backend)")
            let error = try #require(throws: LatencyTableError.self) {
                try LayerLatencyTable.load(path: path, for: config, on: elsewhere)
            }
            #expect(error.description.hasPrefix("--latency-table \(path): measured on another device (cpu (OpenBLAS, "
                                                + "2 threads) on ")
                    && error.description.contains("this run: \(elsewhere.backend) on ")
                    && error.description.hasSuffix("or run with VITFORGE_GEMM=openblas as when it was measured)")
                    && !error.description.contains("\n"), "\(error)")
        }
    }

    @Test("slim's cut rounds each MLP and each kept head's dims (multiples, and a table)")
    func slimRounds() throws {
        var generator = SeededGenerator(seed: 0x7AB)
        let config = try Self.fmVitB.get()
        let masks = ViTSlimTests.randomMasks(config, .dim, &generator)
        let plain = try ViTSlim.plan(masks, config: config, attention: 0.6, mlp: 0.45)
        let eights = try ViTSlim.plan(masks, config: config, attention: 0.6, mlp: 0.45, rounding: .multiple(8))
        #expect(plain == (try ViTSlim.plan(masks, config: config, attention: 0.6, mlp: 0.45, rounding: .multiple(1))))
        for (before, after) in zip(plain.blocks, eights.blocks) {
            #expect(after.mlpHidden.count % 8 == 0
                    && abs(after.mlpHidden.count - before.mlpHidden.count) <= 4, "\(after.mlpHidden.count)")
            #expect(after.heads.map(\.head) == before.heads.map(\.head))
            for head in after.heads { #expect(head.qkDims.count % 8 == 0 && head.qkDims == head.vDims) }
        }
        let table = try Self.syntheticTable(config) { $0 % 12 == 0 ? 1 : 1.5 }
        let tabled = try ViTSlim.plan(masks, config: config, attention: 0.6, mlp: 0.45,
                                      rounding: .table(LoadedLatencyTable(table: table, path: "t", hash: "h")))
        for (before, after) in zip(plain.blocks, tabled.blocks) {
            let asked = before.mlpHidden.count
            #expect(after.mlpHidden.count == WidthRounding.fastestWidth(asked: asked) {
                table.milliseconds(.mlpHidden(block: 0), width: $0)
            })
            // The highest mask values are what stays.
            #expect(Set(after.mlpHidden).isSubset(of: Set(before.mlpHidden)))
        }
    }
}
