import ArgumentParser
import Foundation
import ViTForgeFormats
import ViTForgeModel
import ViTForgePrune

/// One HTML page from the JSON reports of `prune` (and the demo): every model's accuracy against its MACs, widths,
/// latency, training curves and phases, for comparing runs side by side.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Draw prune reports (--report R.json) as one self-contained HTML page.",
        discussion: """
            The page has a summary table and inline-SVG charts, nothing loaded from the network: accuracy against \
            MACs for every report (Pareto front marked, one colour per method), each pruned model's per-block \
            widths (heads, q/k and v dims, MLP) against its original, latency against batch size, training and \
            search curves, and the phases in the order they ran. `prune --html` and `demo` write the same page.
            """)

    @Argument(help: "Reports written by `vitforge prune --report` or the demo.")
    var reports: [String]

    @Option(help: "Where to write the page.")
    var html: String

    @Option(help: "The page's title.")
    var title = "ViTForge pruning report"

    func validate() throws {
        if reports.isEmpty { throw ValidationError("give at least one report") }
    }

    func run() throws {
        try reportingErrors {
            try CommandFiles(inputs: reports.map { .init("report", $0) }, outputs: [.init("--html", html)]).check()
            let decoded = try reports.map(Self.load)
            // Labels: the file names, unless two share one (then the whole paths).
            let names = reports.map { ($0 as NSString).lastPathComponent }
            let labels = Set(names).count == names.count ? names : reports
            let page = HTMLReport.page(decoded, names: labels, title: title)
            try AtomicFile.write(Data(page.utf8), to: html, protecting: reports)
            print("\(html): \(decoded.count) report(s)")
        }
    }

    /// A report file, or a one-line error naming it and what is wrong.
    static func load(_ path: String) throws -> PruneReport {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file"
            throw ValidationError("\(path): \(reason)")
        }
        do {
            return try JSONDecoder().decode(PruneReport.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw ValidationError("\(path): not a prune report (no \"\(key.stringValue)\")")
        } catch {
            throw ValidationError("\(path): not a prune report (\(error.localizedDescription))")
        }
    }
}
