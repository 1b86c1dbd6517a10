import Foundation

extension HTMLReport {
    /// `--compensate`'s per-layer table: each refitted layer's output error on the calibration tokens, as a share of
    /// the layer's output variance, for the plain cut, VBP's mean shift and the refit. Empty without compensation.
    static func compensationTable(_ records: [Compensation.LayerRecord]?) -> String {
        guard let records, !records.isEmpty else { return "" }
        func share(_ value: Double) -> String { String(format: "%.3g%%", value * 100) }
        var html = "<p>Least-squares compensation (<code>--compensate</code>): each layer's output error on the "
            + "calibration tokens, as a share of its output variance.</p>"
            + "<table><tr><th>layer</th><th>inputs removed</th><th>plain cut</th><th>mean shift</th>"
            + "<th>refit</th></tr>\n"
        for record in records {
            html += "<tr><th>\(ReportCharts.escape(record.layer))</th>"
                + "<td>\(record.removed) of \(record.kept + record.removed)</td><td>\(share(record.error.cut))</td>"
                + "<td>\(share(record.error.meanShift))</td><td>\(share(record.error.refit))</td></tr>\n"
        }
        return html + "</table>\n"
    }
}
