import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgePrune
import ViTForgeTestBasics

/// `prune --round-to table --latency-table T` through the binary, on a made-up table (no clock read): the kept
/// widths are the ones the table prefers, the report names the table, and a table for another model is refused.
struct RoundToTableTests {
    /// fm-vit-b's table where every width that is a multiple of 12 costs 1 per channel and any other 1.5.
    static func twelvesTable(_ config: ViTConfig) throws -> LayerLatencyTable {
        let parent = try LayerLatencyTable.ParentShape(config)
        let shapes = LayerLatencyTable.shapes(parent: parent, batch: 1) { Array(1 ... $0) }
        func cost(_ width: Int) -> Double { width % 12 == 0 ? 1 : 1.5 }
        return LayerLatencyTable(
            device: .init(current: CPUBackend()), batch: 1, parent: parent, widths: "every width", rounds: 1,
            linear: shapes.linear.map { key in
                let varying = key.inWidth == parent.width ? key.outWidth : key.inWidth
                return .init(key, milliseconds: Double(key.inWidth * key.outWidth) * 1e-6 * cost(varying))
            },
            attention: shapes.attention.map { .init($0, milliseconds: 1) })
    }

    @Test("--round-to table keeps the widths the table prefers (115 asked → 108) and records the table",
          .enabled(if: PruneCommandTests.fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func tablePicksWidths() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = fixture("fm-vit-b.safetensors")
        let config = try ViTWeights.load(path: model, heads: 4).config
        let table = folder.path("table.json")
        try Self.twelvesTable(config).jsonData().write(to: URL(fileURLWithPath: table))
        let report = folder.path("report.json")
        // 45% of 256 neurons per block asks 115: 108 is the only multiple of 12 within reach (102…115).
        let arguments = ["prune", "--model", model, "--heads", "4", "--method", "magnitude", "--no-compensate",
                         "--keep-mlp", "0.45", "--scope", "block", "--classes", "7", "--latency-batches", "2",
                         "--device", "cpu"]
        let result = try vitforge(arguments + ["--round-to", "table", "--latency-table", table,
                                               "--out", folder.path("pruned.safetensors"), "--report", report])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report)))
            as? [String: Any])
        let blocks = try #require((json["pruned"] as? [String: Any])?["per_block"] as? [[String: Any]])
        #expect(blocks.map { $0["mlp_hidden"] as? Int } == [108, 108, 108, 108])
        let recorded = try #require(json["latency_table"] as? [String: Any])
        #expect(recorded["path"] as? String == table)
        #expect((recorded["hash"] as? String)?.hasPrefix("fnv1a64:") == true)
        #expect((json["budget_asked"] as? String)?.contains("--round-to table") == true)

        // The same table for another model: one line naming the file, nothing written.
        let other = try vitforge(["prune", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2", "--method",
                                  "magnitude", "--keep-mlp", "0.45", "--round-to", "table", "--latency-table", table,
                                  "--out", folder.path("other.safetensors"), "--device", "cpu"])
        #expect(other.status != 0)
        let errors = other.stderrLines.filter { $0.hasPrefix("error:") }
        #expect(errors.count == 1 && errors[0].contains("--latency-table \(table): measured for another model shape")
                && !other.stderr.contains("Fatal error"), "\(other.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder.path("other.safetensors")))
        // The flags go together.
        let alone = try vitforge(["prune", "--model", model, "--round-to", "table", "--out", folder.path("x")])
        #expect(alone.status != 0 && alone.stderr.contains("--round-to table and --latency-table T go together"))
    }

    @Test("vulcan and cpd: --round-to table gives the table's widths (vulcan: of the counts --round-to 1 keeps)",
          .enabled(if: PruneCommandTests.fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func vulcanAndCPD() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = fixture("fm-vit-b.safetensors")
        let config = try ViTWeights.load(path: model, heads: 4).config
        let made = try Self.twelvesTable(config)
        let table = folder.path("table.json")
        try made.jsonData().write(to: URL(fileURLWithPath: table))
        func widths(_ report: String) throws -> [[String: Any]] {
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report)))
                as? [String: Any])
            return try #require((json["pruned"] as? [String: Any])?["per_block"] as? [[String: Any]])
        }
        func field(_ block: [String: Any], _ name: String) -> Int {
            (block[name] as? Int) ?? (block[name] as? [Int])?.first ?? -1
        }
        // Vulcan without post-training: the same counts from the same statistics, rounded two ways.
        let vulcan = ["prune", "--model", model, "--heads", "4", "--method", "vulcan", "--classes", "7",
                      "--prune-ratio", "0.45", "--calib-images", "200", "--latency-batches", "2", "--device", "cpu"]
        var runs: [String: [[String: Any]]] = [:]
        for rounding in [["--round-to", "1"], ["--round-to", "table", "--latency-table", table]] {
            let report = folder.path("vulcan-\(rounding[1]).json")
            let result = try vitforge(vulcan + rounding + ["--out", folder.path("v.safetensors"), "--report", report])
            #expect(result.status == 0, "\(result.stderr)")
            runs[rounding[1]] = try widths(report)
        }
        let counts = try #require(runs["1"]), tabled = try #require(runs["table"])
        var offEights = false
        for b in 0 ..< config.depth {
            for (name, kind) in [("mlp_hidden", SpaceKind.mlpHidden(block: b)), ("qk_dim", .qkDims(block: b)),
                                 ("v_dim", .vDims(block: b))] {
                let asked = field(counts[b], name), got = field(tabled[b], name)
                let expected = WidthRounding.fastestWidth(asked: asked) { made.milliseconds(kind, width: $0) }
                #expect(got == expected, "block \(b) \(name): \(asked) → \(got), expected \(expected)")
                offEights = offEights || got % 8 != 0
            }
        }
        #expect(offEights, "\(tabled)")

        // CPD: every MLP width a cut lands on is one the table picks (multiples of 12 from 256 in steps of 32),
        // or its floor of 32.
        let report = folder.path("cpd.json")
        let result = try vitforge([
            "prune", "--model", model, "--heads", "4", "--method", "cpd", "--target-macs", "0.65", "--epochs", "1",
            "--prune-interval", "10", "--classes", "7", "--batch-size", "97", "--latency-batches", "2",
            "--round-to", "table", "--latency-table", table, "--out", folder.path("c.safetensors"), "--report", report,
            "--device", "cpu",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let mlp = try widths(report).map { field($0, "mlp_hidden") }
        #expect(mlp.allSatisfy { [256, 216, 180, 144, 108, 72, 36, 32].contains($0) } && mlp.contains { $0 != 256 },
                "\(mlp)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        #expect((json?["macs_fraction"] as? Double ?? 1) <= 0.65)
        #expect((json?["budget_asked"] as? String)?.contains("--round-to table") == true)
        #expect((json?["latency_table"] as? [String: Any])?["path"] as? String == table)
    }
}
