import Foundation
#if canImport(FoundationXML)
import FoundationXML  // XMLParser, for the SVG well-formedness check
#endif
import Testing
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTrain

/// A report with the given method, MACs and accuracy (other numbers plausible), on fm-vit-c-like widths.
func syntheticReport(method: String, macs: Int, accuracy: Double, epochs: Int = 0) -> PruneReport {
    let original = ViTConfig.timm(imageSize: 28, patchSize: 4, inChannels: 1, classes: 10, embedDim: 96, depth: 3,
                                  heads: 2)
    var pruned = original
    pruned.blocks[1] = BlockConfig(qkDims: [7, 30], vDims: [11, 48], mlpHidden: 101, attentionScale: 0.2)
    // EpochRecord and InferenceTiming have no public initialisers: made as their JSON, as reports hold them.
    func decoded<T: Decodable>(_ object: Any) -> T {
        // Plain dictionaries of numbers and strings always serialise, and decode into the types they were made for.
        try! JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: object))
    }
    var history = TrainingHistory()
    history.epochs = (1...max(epochs, 1)).map { epoch in
        decoded(["epoch": epoch, "step": epoch * 10, "trainLoss": 2.0 / Double(epoch), "learningRate": 1e-4,
                 "seconds": 1.0, "imagesPerSecond": 100.0, "terms": ["slim_l1": 0.5 / Double(epoch)]] as [String: Any])
    }
    let timing: [InferenceTiming] = [1, 8, 64].map { batch in
        decoded(["batch": batch, "latency_ms_median": Double(batch) * 0.3, "images_per_second": 1000 / 0.3]
                as [String: Any])
    }
    return PruneReport(
        command: "vitforge prune", version: "test", device: "cpu", seed: 1, method: method, budget: "b",
        original: .init(path: "m.safetensors", params: 455_050, macs: 24_114_624, accuracy: 0.86,
                        perBlock: PruneReport.widths(original), latency: timing),
        pruned: .init(path: "p.safetensors", params: 300_000, macs: macs, accuracy: accuracy,
                      perBlock: PruneReport.widths(pruned), latency: timing),
        accuracyAfterPruning: accuracy, accuracyAfterFineTuning: nil, paramsFraction: 0.6,
        macsFraction: Double(macs) / 24_114_624, epochs: epochs, finetuneEpochs: 0, distill: false,
        methodHistory: epochs > 0 ? history : nil, histograms: [:], seconds: ["prune": 2, "latency": 1],
        phases: [.init(name: "prune", seconds: 2), .init(name: "latency", seconds: 1)])
}

struct HTMLReportTests {
    /// Every `<svg>…</svg>` of `page`, in order.
    static func svgs(_ page: String) -> [String] {
        var rest = page[...]
        var result: [String] = []
        while let start = rest.range(of: "<svg"), let end = rest.range(of: "</svg>", range: start.upperBound..<rest.endIndex) {
            result.append(String(rest[start.lowerBound..<end.upperBound]))
            rest = rest[end.upperBound...]
        }
        return result
    }

    @Test("Pareto front: the models no other beats on both MACs and accuracy, by MACs")
    func paretoFront() {
        let points: [(macs: Double, accuracy: Double)] = [(10, 50), (12, 70), (11, 40), (20, 70), (25, 90), (12, 65)]
        let front = ReportCharts.paretoFront(points)
        #expect(front.map(\.macs) == [10, 12, 25])
        #expect(front.map(\.accuracy) == [50, 70, 90])
    }

    @Test("Every chart of every report is on the page, each SVG well-formed, nothing external")
    func everyChart() throws {
        let reports = [syntheticReport(method: "slim", macs: 12_000_000, accuracy: 0.8, epochs: 3),
                       syntheticReport(method: "magnitude", macs: 15_000_000, accuracy: 0.83),
                       syntheticReport(method: "slim", macs: 9_000_000, accuracy: 0.7, epochs: 2)]
        let page = HTMLReport.page(reports, names: ["a", "b", "c"])
        for chart in HTMLReport.pageCharts { #expect(page.contains("data-chart=\"\(chart)\"")) }
        for index in 1...3 {
            for chart in HTMLReport.perReportCharts { #expect(page.contains("data-chart=\"\(chart)-\(index)\"")) }
        }
        #expect(!page.contains("<script"))
        #expect(page.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").range(of: "http") == nil)
        // Every <svg>…</svg> parses as XML.
        let svgs = Self.svgs(page)
        for svg in svgs { #expect(XMLParser(data: Data(svg.utf8)).parse(), "malformed SVG: \(svg.prefix(120))") }
        #expect(svgs.count == HTMLReport.pageCharts.count + 3 * HTMLReport.perReportCharts.count)
        // Two methods, two colours; the search term's curve is drawn for the runs that searched.
        #expect(page.contains(ReportCharts.palette[0]) && page.contains(ReportCharts.palette[1]))
        #expect(page.contains("slim: slim_l1"))
        #expect(page.contains("no training phase in this run"))
    }

    @Test("A report written before phases and fine-tuning history were recorded still reads and draws")
    func olderReport() throws {
        var report = syntheticReport(method: "vbp", macs: 10_000_000, accuracy: 0.8)
        report.phases = nil
        let data = try report.jsonData()
        var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        object.removeValue(forKey: "phases")
        object.removeValue(forKey: "finetune_history")
        let decoded = try JSONDecoder().decode(PruneReport.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(decoded.phasesInOrder.map(\.name) == ["latency", "prune"])
        #expect(HTMLReport.page(decoded).contains("data-chart=\"phases-1\""))
    }

    @Test("A token-pruned model's section: tokens per block and the patch grid shaded by the blocks keeping each patch; the sets survive the JSON")
    func tokenCharts() throws {
        // fm-vit-c-like: 7×7 patches after the class token; block 0 keeps all, block 1 drops patches 3 and 40,
        // block 2 keeps patches 0, 1 and 48 only.
        var config = ViTConfig.timm(imageSize: 28, patchSize: 4, inChannels: 1, classes: 10, embedDim: 96, depth: 3,
                                    heads: 2)
        let block1 = [0] + (1...49).filter { $0 != 4 && $0 != 41 }
        config.tokenSets = [Array(0..<50), block1, [0, 1, 2, 49]]
        let tokens = try #require(PruneReport.TokenSets(config))
        #expect(PruneReport.TokenSets(ViTConfig.timm(imageSize: 28, patchSize: 4, inChannels: 1, classes: 10,
                                                     embedDim: 96, depth: 3, heads: 2)) == nil)
        var expected = [Int](repeating: 2, count: 49)
        expected[3] = 1
        expected[40] = 1
        for patch in [0, 1, 48] { expected[patch] = 3 }
        #expect(tokens.gridSide == 7 && tokens.prefixTokens == 1 && tokens.blocksKeeping == expected)

        var report = syntheticReport(method: "slim", macs: 10_000_000, accuracy: 0.8)
        report.pruned.tokens = tokens
        let plain = syntheticReport(method: "vbp", macs: 12_000_000, accuracy: 0.8)
        let page = HTMLReport.page([report, plain], names: ["tokens", "plain"])
        for chart in HTMLReport.tokenCharts {
            #expect(page.contains("data-chart=\"\(chart)-1\""))
            #expect(!page.contains("data-chart=\"\(chart)-2\""))
        }
        let svgs = Self.svgs(page)
        for svg in svgs { #expect(XMLParser(data: Data(svg.utf8)).parse(), "malformed SVG: \(svg.prefix(120))") }
        #expect(svgs.count == HTMLReport.pageCharts.count + 2 * HTMLReport.perReportCharts.count
            + HTMLReport.tokenCharts.count)
        let grid = try #require(svgs.first { $0.contains("data-chart=\"tokens-grid-1\"") })
        let cells = grid.components(separatedBy: "class=\"patch\" data-blocks=\"").dropFirst()
            .map { Int($0.prefix { $0.isNumber }) ?? -1 }
        #expect(cells == expected)
        #expect(grid.contains("patch 40 (row 5, column 5): kept by block 0 only of 3"))
        let bars = try #require(svgs.first { $0.contains("data-chart=\"tokens-blocks-1\"") })
        for (block, count) in [50, 48, 4].enumerated() { #expect(bars.contains("block \(block): \(count) of 50")) }

        // JSON: the sets round-trip; a report without them has no key.
        let decoded = try JSONDecoder().decode(PruneReport.self, from: report.jsonData())
        #expect(decoded.pruned.tokens == tokens && decoded.original.tokens == nil)
        #expect(String(decoding: try plain.jsonData(), as: UTF8.self).range(of: "token_sets") == nil)
    }
}
