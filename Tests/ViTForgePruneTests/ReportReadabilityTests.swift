import Foundation
import Testing
@testable import ViTForgePrune

/// The page `vitforge report` draws for four runs of different methods, one of them on a class subset (issue 25):
/// one original point per (model, data, class subset), subset accuracies apart from full ones and labelled, legends
/// right of the plotting area, one label per run in every chart, the budget asked for beside what was reached.
struct ReportReadabilityTests {
    static let names = ["vbp.json", "slim.json", "cpd.json", "vulcan.json"]

    static func fourRuns() -> [PruneReport] {
        let specs: [(method: String, macs: Int, accuracy: Double, asked: String, classes: [Int]?)] = [
            ("vbp", 14_468_774, 0.84, "--target-macs 0.6", nil),
            ("slim", 12_057_312, 0.81, "--keep-mlp 0.5 --keep-attn 0.6", nil),
            ("cpd", 6_028_656, 0.77, "--target-macs 0.25", nil),
            ("vulcan", 9_645_849, 0.97, "--prune-ratio 0.6", [0, 2, 6]),
        ]
        return specs.map { spec in
            var report = syntheticReport(method: spec.method, macs: spec.macs, accuracy: spec.accuracy)
            report.budgetAsked = spec.asked
            report.data = "fashion-mnist"
            report.classes = spec.classes
            // Vulcan's "original" accuracy is the base model's on the subset: a different number on other images.
            if spec.classes != nil { report.original.accuracy = 0.95 }
            return report
        }
    }

    /// The `<svg …>…</svg>` of chart `name`.
    static func chart(_ name: String, in page: String) throws -> String {
        let start = try #require(page.range(of: "data-chart=\"\(name)\""))
        let open = try #require(page.range(of: "<svg", options: .backwards, range: page.startIndex..<start.lowerBound))
        let close = try #require(page.range(of: "</svg>", range: start.upperBound..<page.endIndex))
        return String(page[open.lowerBound..<close.upperBound])
    }

    /// Every element `<tag …>` carrying `marker`, as its attribute dictionary.
    static func elements(_ tag: String, with marker: String, in svg: String) -> [[String: String]] {
        let pattern = try! NSRegularExpression(pattern: "<\(tag)\\b([^>]*)>")
        let attribute = try! NSRegularExpression(pattern: "([a-z0-9-]+)=\"([^\"]*)\"")
        return pattern.matches(in: svg, range: NSRange(svg.startIndex..., in: svg)).compactMap { match in
            let text = String(svg[Range(match.range(at: 1), in: svg)!])
            guard text.contains(marker) else { return nil }
            var result: [String: String] = [:]
            for pair in attribute.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                result[String(text[Range(pair.range(at: 1), in: text)!])] = String(text[Range(pair.range(at: 2), in: text)!])
            }
            return result
        }
    }

    /// The right edge of the plotting area: where the x axis ends.
    static func plotRight(_ svg: String) throws -> Double {
        let axis = try #require(elements("line", with: "x1=", in: svg).first)
        return try #require(Double(axis["x2"] ?? ""))
    }

    @Test("four runs, one on a class subset: two original points, the subset's drawn hollow, labelled and off the full front")
    func accuracyChart() throws {
        let page = HTMLReport.page(Self.fourRuns(), names: Self.names)
        let svg = try Self.chart("accuracy-macs", in: page)
        let originals = Self.elements("circle", with: "point original", in: svg)
        #expect(originals.map { $0["data-label"] ?? "" }.sorted()
                == ["original", "original (classes 0,2,6 only)"])
        let runs = Self.elements("circle", with: "point run", in: svg)
        #expect(runs.map { $0["data-label"] ?? "" } == ["vbp.json", "slim.json", "cpd.json",
                                                         "vulcan.json (classes 0,2,6 only)"])
        #expect(runs.map { $0["fill"] == "#fff" } == [false, false, false, true], "only the subset run is hollow")
        #expect(originals.first { $0["data-label"] != "original" }?["fill"] == "#fff")
        // The full-data front never passes through a subset accuracy.
        let subsetCentres = Set((runs.suffix(1) + originals.filter { $0["data-label"] != "original" })
            .map { "\($0["cx"] ?? ""),\($0["cy"] ?? "")" })
        let fullFront = Self.elements("circle", with: "data-set=\"fashion-mnist\"", in: svg)
        #expect(!fullFront.isEmpty)
        #expect(fullFront.allSatisfy { !subsetCentres.contains("\($0["cx"] ?? ""),\($0["cy"] ?? "")") })
        #expect(svg.contains(">hollow: accuracy on a class subset</text>"))
    }

    @Test("legends sit right of the plotting area, and each run has the same label in every chart and heading",
          arguments: ["accuracy-macs", "latency-batch"])
    func legendsAndLabels(chart: String) throws {
        let page = HTMLReport.page(Self.fourRuns(), names: Self.names)
        let svg = try Self.chart(chart, in: page)
        let right = try Self.plotRight(svg)
        let width = try #require(Double(Self.elements("svg", with: "data-chart", in: svg).first?["width"] ?? ""))
        let keys = Self.elements("circle", with: "legend-key", in: svg) + Self.elements("line", with: "legend-key", in: svg)
        #expect(keys.count >= 5, "\(keys.count) legend keys")
        for key in keys {
            let left = Double(key["x1"] ?? "") ?? ((Double(key["cx"] ?? "") ?? 0) - 4)
            #expect(left > right && left < width, "legend key at \(left), plot ends at \(right)")
        }
        let labels = Self.elements("tspan", with: "dy=", in: svg).compactMap { Double($0["x"] ?? "") }
        #expect(!labels.isEmpty && labels.allSatisfy { $0 > right })
        for name in Self.names {
            #expect(svg.contains(">\(name)</tspan>") || svg.contains(">\(name) (classes 0,2,6 only)</tspan>"),
                    "\(name) missing from \(chart)'s legend")
            #expect(page.contains("\(name)</h2>"))
        }
    }

    @Test("the budget column shows the target asked for and what was reached")
    func budgetColumn() throws {
        let page = HTMLReport.page(Self.fourRuns(), names: Self.names)
        #expect(page.contains("<td class=\"budget\">--target-macs 0.6 → MACs 60.0%, params 60.0%</td>"))
        #expect(page.contains("<td class=\"budget\">--prune-ratio 0.6 → MACs 40.0%, params 60.0%</td>"))
        #expect(page.contains("<td>fashion-mnist, classes 0,2,6 only</td>"))
        #expect(!page.contains(">b</td>"), "the reached-budget dump is not the budget column")
    }

    @Test("an older report without the new fields: data, classes and budget come from its command line")
    func olderReport() {
        var report = syntheticReport(method: "vulcan", macs: 9_000_000, accuracy: 0.9)
        report.command = "vitforge prune --model m --data idx --classes 1,4 --prune-ratio 0.5 --out p"
        #expect(ReportRuns.evaluationSet(report) == .init(data: "idx", classes: [1, 4]))
        #expect(ReportRuns.askedBudget(report) == "--prune-ratio 0.5")
    }
}
