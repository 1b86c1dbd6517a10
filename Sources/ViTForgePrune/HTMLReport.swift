import Foundation

/// A self-contained HTML page for a prune report: the before/after table and bar charts as inline SVG (no
/// scripts, no external files), so it opens anywhere and can be attached to a ticket.
public enum HTMLReport {
    public static func page(_ report: PruneReport, title: String = "ViTForge pruning report") -> String {
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;")
        }
        func fixed(_ value: Double, _ decimals: Int = 1) -> String { String(format: "%.\(decimals)f", value) }
        let accuracy = [("original", report.original.accuracy), ("pruned", report.accuracyAfterPruning),
                        ("fine-tuned", report.accuracyAfterFineTuning)]
            .compactMap { name, value in value.map { (name, $0 * 100) } }
        var bars: [(String, [(String, Double)], String)] = [
            ("Test accuracy (%)", accuracy, "%"),
            ("Parameters (millions)", [("original", Double(report.original.params) / 1e6),
                                       ("pruned", Double(report.pruned.params) / 1e6)], "M"),
            ("MACs per image (millions)", [("original", Double(report.original.macs) / 1e6),
                                           ("pruned", Double(report.pruned.macs) / 1e6)], "M"),
        ]
        for (before, after) in zip(report.original.latency, report.pruned.latency) {
            bars.append(("Images/s at batch \(before.batch)", [("original", before.imagesPerSecond),
                                                              ("pruned", after.imagesPerSecond)], ""))
        }
        var html = """
            <!doctype html><html><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}
            table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
            th{background:#f4f4f4}code{background:#f4f4f4;padding:2px 4px}.charts{display:flex;flex-wrap:wrap;gap:1em}</style>
            </head><body><h1>\(escape(title))</h1>
            <p>Method <b>\(escape(report.method))</b>, \(report.finetuneEpochs) epoch(s) of fine-tuning\
            \(report.distill ? " with distillation" : ""), device \(escape(report.device)), seed \(report.seed), \
            vitforge \(escape(report.version)).</p>
            <p><code>\(escape(report.command))</code></p>
            <table><tr><th></th><th>original</th><th>pruned</th></tr>
            """
        func row(_ name: String, _ a: String, _ b: String) { html += "<tr><th>\(name)</th><td>\(a)</td><td>\(b)</td></tr>\n" }
        row("accuracy", report.original.accuracy.map { fixed($0 * 100) + "%" } ?? "n/a",
            report.pruned.accuracy.map { fixed($0 * 100) + "%" } ?? "n/a")
        row("parameters", "\(report.original.params)", "\(report.pruned.params) (\(fixed(report.paramsFraction * 100))%)")
        row("MACs / image", "\(report.original.macs)", "\(report.pruned.macs) (\(fixed(report.macsFraction * 100))%)")
        row("MLP widths", report.original.perBlock.map { "\($0.mlpHidden)" }.joined(separator: ", "),
            report.pruned.perBlock.map { "\($0.mlpHidden)" }.joined(separator: ", "))
        for (before, after) in zip(report.original.latency, report.pruned.latency) {
            row("latency @\(before.batch) (ms)", fixed(before.latencyMsMedian, 2), fixed(after.latencyMsMedian, 2))
        }
        html += "</table><div class=\"charts\">\n"
        for (caption, values, unit) in bars { html += barChart(caption, values, unit: unit) }
        html += "</div><h2>Time per phase</h2><table><tr><th>phase</th><th>seconds</th></tr>\n"
        for (phase, seconds) in report.seconds.sorted(by: { $0.key < $1.key }) {
            html += "<tr><th>\(escape(phase))</th><td>\(fixed(seconds))</td></tr>\n"
        }
        html += "</table></body></html>\n"
        return html
    }

    /// Horizontal bars, one per value, scaled to the largest.
    static func barChart(_ caption: String, _ values: [(String, Double)], unit: String) -> String {
        let width = 400.0, barHeight = 22.0, labelWidth = 80.0
        let largest = max(values.map(\.1).max() ?? 1, 1e-12)
        let height = Double(values.count) * (barHeight + 6) + 28
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width + labelWidth + 70))\" height=\"\(Int(height))\">"
        svg += "<text x=\"0\" y=\"16\" font-size=\"14\" font-weight=\"bold\">\(caption)</text>"
        let colors = ["#7a7a7a", "#2f6db5", "#2a9d5b"]
        for (index, (name, value)) in values.enumerated() {
            let y = 26 + Double(index) * (barHeight + 6)
            let length = max(1, value / largest * width)
            svg += "<text x=\"0\" y=\"\(y + 16)\" font-size=\"12\">\(name)</text>"
            svg += "<rect x=\"\(labelWidth)\" y=\"\(y)\" width=\"\(length)\" height=\"\(barHeight)\" fill=\"\(colors[index % colors.count])\"/>"
            svg += "<text x=\"\(labelWidth + length + 4)\" y=\"\(y + 16)\" font-size=\"12\">\(String(format: "%.2f", value))\(unit)</text>"
        }
        return svg + "</svg>\n"
    }
}
