import Foundation
import Testing
@testable import ViTForgePrune

/// The HTML report's `--compensate` table (`CompensationReport.swift`): one row per refitted layer, in the report's
/// order, with the inputs removed and the output error of the plain cut, the mean shift and the refit as shares of
/// the layer's output variance; nothing without compensation; the same page from the JSON report `vitforge report`
/// reads back.
struct CompensationReportTests {
    static func record(_ layer: String, kept: Int, removed: Int, cut: Double, meanShift: Double, refit: Double)
        -> Compensation.LayerRecord {
        Compensation.LayerRecord(layer: layer, kept: kept, removed: removed,
                                 error: .init(cut: cut, meanShift: meanShift, refit: refit, outputVariance: 2.5))
    }

    static let records = [
        record("blocks.0.attn.proj", kept: 48, removed: 48, cut: 0.4213, meanShift: 0.2107, refit: 0.0523),
        record("blocks.0.mlp.fc2", kept: 96, removed: 288, cut: 1.37, meanShift: 0.0912, refit: 0.000431),
        record("blocks.1.<mlp>&fc2", kept: 1, removed: 0, cut: 0, meanShift: 0, refit: 0),
    ]

    /// The rows of the compensation table on `page`, each as its cells' text.
    static func rows(_ page: String) -> [[String]] {
        guard let start = page.range(of: "<th>refit</th></tr>"),
              let end = page.range(of: "</table>", range: start.upperBound ..< page.endIndex) else { return [] }
        let cell = try! NSRegularExpression(pattern: "<t[hd]>([^<]*)</t[hd]>")
        return page[start.upperBound ..< end.lowerBound].components(separatedBy: "</tr>").compactMap { row in
            let range = NSRange(row.startIndex ..< row.endIndex, in: row)
            let cells = cell.matches(in: row, range: range).compactMap { match in
                Range(match.range(at: 1), in: row).map { String(row[$0]) }
            }
            return cells.isEmpty ? nil : cells
        }
    }

    @Test("each refitted layer's errors before (plain cut, mean shift) and after the refit, as % of its variance")
    func tableRows() throws {
        var report = syntheticReport(method: "vbp", macs: 12_000_000, accuracy: 0.8)
        report.compensation = Self.records
        let page = HTMLReport.page([report], names: ["vbp"])
        #expect(page.contains("<th>plain cut</th><th>mean shift</th><th>refit</th>"))
        let rows = Self.rows(page)
        #expect(rows == [["blocks.0.attn.proj", "48 of 96", "42.1%", "21.1%", "5.23%"],
                         ["blocks.0.mlp.fc2", "288 of 384", "137%", "9.12%", "0.0431%"],
                         ["blocks.1.&lt;mlp&gt;&amp;fc2", "0 of 1", "0%", "0%", "0%"]])
        #expect(!page.contains("<mlp>"))

        // What `vitforge report` draws from the JSON file is the same page.
        let decoded = try JSONDecoder().decode(PruneReport.self, from: report.jsonData())
        #expect(decoded.compensation == Self.records)
        #expect(Self.rows(HTMLReport.page([decoded], names: ["vbp"])) == rows)
    }

    @Test("no compensation table without --compensate, nor for an empty record list")
    func noTable() {
        var report = syntheticReport(method: "magnitude", macs: 12_000_000, accuracy: 0.8)
        #expect(Self.rows(HTMLReport.page([report], names: ["m"])).isEmpty)
        #expect(!HTMLReport.page([report], names: ["m"]).contains("Least-squares compensation"))
        report.compensation = []
        #expect(!HTMLReport.page([report], names: ["m"]).contains("Least-squares compensation"))
    }
}
