import Foundation
import ViTForgeModel
import ViTForgeTrain

/// A self-contained HTML page for one or more prune reports (`vitforge report`, and what `prune --html` and the
/// demo write): a summary table and inline-SVG charts, no scripts, no external files, so it opens anywhere and can
/// be attached to a ticket. Charts: accuracy against MACs of every model (Pareto front marked, one colour per
/// method), each pruned model's per-block widths (heads, q/k and v dims, MLP) against its original, for a token-pruned
/// model its tokens per block and the patch grid shaded by how many blocks keep each patch, latency against batch
/// size, training and search curves, and the phases in the order they ran.
public enum HTMLReport {
    /// `--target-latency`'s line: the shape's measured latency and how the solve reached it.
    static func latencySolveLine(_ solve: LatencySolveRecord) -> String {
        "\(Formatting.fixed(solve.measuredMilliseconds, decimals: 2)) ms measured; \(solve.summary)"
    }

    /// The `data-chart` names every page has (per-report charts add `-N`, 1-based, to theirs).
    public static let pageCharts = ["accuracy-macs", "latency-batch"]
    public static let perReportCharts = ["widths-heads", "widths-qk", "widths-v", "widths-mlp", "curves", "phases"]
    /// What a token-pruned model's section adds (`-N` too).
    public static let tokenCharts = ["tokens-blocks", "tokens-grid"]

    public static func page(_ report: PruneReport, title: String = "ViTForge pruning report") -> String {
        page([report], title: title)
    }

    /// `names` label the reports (file names for `vitforge report`); by default "method · budget asked". Each run
    /// keeps its label and colour in the table and every chart.
    public static func page(_ reports: [PruneReport], names: [String]? = nil,
                            title: String = "ViTForge pruning report") -> String {
        let escape = ReportCharts.escape
        let runs = ReportRuns(reports, names: names)
        func percent(_ value: Double?) -> String { value.map { String(format: "%.1f%%", $0 * 100) } ?? "n/a" }
        func millions(_ value: Int) -> String { String(format: "%.2fM", Double(value) / 1e6) }

        var html = """
            <!doctype html><html><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
            table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
            th{background:#f4f4f4}code{background:#f4f4f4;padding:2px 4px;word-break:break-all}
            td.budget{text-align:left}.swatch{display:inline-block;width:10px;height:10px;margin-right:6px}
            .charts{display:flex;flex-wrap:wrap;gap:1em}svg.chart{border:1px solid #ddd}</style>
            </head><body><h1>\(escape(title))</h1>
            <table><tr><th>run</th><th>method</th><th>budget: asked → reached</th><th>accuracy measured on</th>\
            <th>accuracy original</th><th>after pruning</th><th>after fine-tuning</th><th>params</th>\
            <th>MACs / image</th><th>device</th></tr>

            """
        for (index, report) in reports.enumerated() {
            html += "<tr><th><span class=\"swatch\" style=\"background:\(runs.colors[index])\"></span>"
                + "\(escape(runs.labels[index]))</th><td>\(escape(report.method))</td>"
                + "<td class=\"budget\">\(escape(ReportRuns.askedBudget(report))) → "
                + "\(escape(ReportRuns.reachedBudget(report)))</td>"
                + "<td>\(escape(ReportRuns.evaluationSet(report).caption))</td>"
                + "<td>\(percent(report.original.accuracy))</td>"
                + "<td>\(percent(report.accuracyAfterPruning))</td><td>\(percent(report.accuracyAfterFineTuning))</td>"
                + "<td>\(millions(report.pruned.params)) (\(percent(report.paramsFraction)))</td>"
                + "<td>\(millions(report.pruned.macs)) (\(percent(report.macsFraction)))</td>"
                + "<td>\(escape(report.device))</td></tr>\n"
        }
        html += "</table><div class=\"charts\">\n"
        html += accuracyAgainstMacs(runs)
        html += latencyAgainstBatch(runs)
        html += "</div>\n"
        for (index, report) in reports.enumerated() {
            let suffix = "-\(index + 1)", color = runs.colors[index]
            html += "<h2><span class=\"swatch\" style=\"background:\(color)\"></span>\(escape(runs.labels[index]))</h2>"
                + "<p>Method <b>\(escape(report.method))</b>, "
                + "\(report.epochs) epoch(s) of the method's training, \(report.finetuneEpochs) of fine-tuning"
                + "\(report.distill ? " with distillation" : ""), device \(escape(report.device)), seed \(report.seed), "
                + "vitforge \(escape(report.version)).</p><p><code>\(escape(report.command))</code></p>"
                + (report.latencyTable.map {
                    "<p>Latency table <code>\(escape($0.path))</code> (\(escape($0.hash))), "
                        + "measured on \(escape($0.device)) at batch \($0.batch).</p>"
                } ?? "")
                + (report.latencySolve.map { "<p>Latency target: \(escape(Self.latencySolveLine($0))).</p>" } ?? "")
                + "<div class=\"charts\">\n"
            let before = report.original.perBlock, after = report.pruned.perBlock
            let quantities: [(String, String, (PruneReport.BlockWidths) -> Int)] = [
                ("widths-heads", "Heads per block", { $0.heads }),
                ("widths-qk", "q/k dims per block (all heads)", { $0.qkDims?.reduce(0, +) ?? $0.heads * $0.qkDim }),
                ("widths-v", "v dims per block (all heads)", { $0.vDims?.reduce(0, +) ?? $0.heads * $0.vDim }),
                ("widths-mlp", "MLP neurons per block", { $0.mlpHidden }),
            ]
            for (name, caption, value) in quantities {
                html += ReportCharts.blockBars(name + suffix, title: caption, original: before.map(value),
                                               pruned: after.map(value), color: color)
            }
            if let tokens = report.pruned.tokens {
                let full = report.original.tokens?.sets.map(\.count)
                    ?? [Int](repeating: tokens.tokens, count: tokens.sets.count)
                html += ReportCharts.blockBars(tokenCharts[0] + suffix, title: "Tokens per block", original: full,
                                               pruned: tokens.sets.map(\.count), color: color)
                html += ReportCharts.tokenGrid(tokenCharts[1] + suffix, title: "Blocks keeping each patch",
                                               tokens: tokens, color: color)
            }
            html += trainingCurves("curves" + suffix, report)
            if let steps = report.pruningSteps { html += pruningTrajectory("trajectory" + suffix, steps) }
            html += ReportCharts.phaseTimeline("phases" + suffix, title: "Phases in the order they ran (seconds)",
                                               phases: report.phasesInOrder)
            html += "</div><table><tr><th>phase</th><th>seconds</th></tr>\n"
            for phase in report.phasesInOrder {
                html += "<tr><th>\(escape(phase.name))</th><td>\(String(format: "%.1f", phase.seconds))</td></tr>\n"
            }
            html += "</table>\n"
            html += compensationTable(report.compensation)
            html += methodMetricsTable(report.methodMetrics)
        }
        return html + "</body></html>\n"
    }

    /// The method's own numbers by name (ViT-Slim: how far apart the removed and kept mask entries ended; Vulcan:
    /// subset accuracies), in name order.
    static func methodMetricsTable(_ metrics: [String: Double]?) -> String {
        guard let metrics, !metrics.isEmpty else { return "" }
        var html = "<table><tr><th>the method's numbers</th><th>value</th></tr>\n"
        for (name, value) in metrics.sorted(by: { $0.key < $1.key }) {
            html += "<tr><th>\(ReportCharts.escape(name))</th><td>\(String(format: "%.4g", value))</td></tr>\n"
        }
        return html + "</table>\n"
    }

    /// Accuracy (%) against MACs (millions): one point per run in its colour, one grey "original" point per distinct
    /// (model, data, class subset). An accuracy on a class subset is a different quantity from one on all classes:
    /// its points are hollow, its labels name the classes, and each evaluation set has its own Pareto front.
    static func accuracyAgainstMacs(_ runs: ReportRuns) -> String {
        let name = "accuracy-macs", title = "Accuracy against MACs per image"
        var series: [ReportCharts.Series] = []
        var originalKeys = Set<String>()
        var sets: [ReportRuns.EvaluationSet] = []
        var pointsBySet: [ReportRuns.EvaluationSet: [(macs: Double, accuracy: Double)]] = [:]
        let severalDataSets = Set(runs.reports.map { ReportRuns.evaluationSet($0).data }).count > 1
        for (index, report) in runs.reports.enumerated() {
            let set = ReportRuns.evaluationSet(report)
            if !sets.contains(set) { sets.append(set) }
            let suffix = set.legendSuffix(severalDataSets: severalDataSets)
            let originalKey = "\(report.original.path)|\(report.original.macs)|\(set.data)|\(set.classes ?? [])"
            if let accuracy = report.original.accuracy, originalKeys.insert(originalKey).inserted {
                let point = (Double(report.original.macs) / 1e6, accuracy * 100)
                series.append(.init(name: "original" + suffix, color: ReportCharts.originalColor, points: [point],
                                    connect: false, hollow: set.isSubset, role: "original"))
                pointsBySet[set, default: []].append(point)
            }
            guard let accuracy = report.pruned.accuracy else { continue }
            let point = (Double(report.pruned.macs) / 1e6, accuracy * 100)
            series.append(.init(name: runs.labels[index] + suffix, color: runs.colors[index], points: [point],
                                connect: false, hollow: set.isSubset, role: "run"))
            pointsBySet[set, default: []].append(point)
        }
        let points = series.flatMap(\.points)
        guard !points.isEmpty else {
            return ReportCharts.empty(name, title: title, reason: "no accuracy in these reports (no test data)")
        }
        var frame = ReportCharts.Frame(xs: points.map(\.x), ys: points.map(\.y))
        frame.makeRoomForLegend()
        var svg = ReportCharts.open(name, frame, title: title)
            + ReportCharts.axes(frame, xLabel: "MACs per image (millions)", yLabel: "accuracy (%)")
        // Each set's front as a staircase (a model is only worth its MACs until a cheaper one is as accurate) with
        // rings; never across sets, whose accuracies do not compare.
        for set in sets {
            let front = ReportCharts.paretoFront(pointsBySet[set] ?? [])
            guard front.count > 1 else { continue }
            let caption = ReportCharts.escape(set.caption)
            var steps: [String] = []
            for (index, point) in front.enumerated() {
                let x = ReportCharts.number(frame.x(point.macs))
                if index > 0 { steps.append("\(x),\(ReportCharts.number(frame.y(front[index - 1].accuracy)))") }
                steps.append("\(x),\(ReportCharts.number(frame.y(point.accuracy)))")
            }
            svg += "<polyline class=\"pareto\" data-set=\"\(caption)\" fill=\"none\" stroke=\"#222\" "
                + "stroke-width=\"1\" stroke-dasharray=\"4 3\" points=\"\(steps.joined(separator: " "))\"/>"
            for point in front {
                svg += "<circle class=\"pareto\" data-set=\"\(caption)\" cx=\"\(ReportCharts.number(frame.x(point.macs)))\" "
                    + "cy=\"\(ReportCharts.number(frame.y(point.accuracy)))\" r=\"7\" fill=\"none\" stroke=\"#222\"/>"
            }
        }
        var notes = ["rings, dashed: Pareto front" + (sets.count > 1 ? " per set" : "")]
        if sets.contains(where: \.isSubset) { notes.append("hollow: accuracy on a class subset") }
        svg += ReportCharts.plot(series, frame, notes: notes)
        return svg + "</svg>\n"
    }

    /// Median latency (ms) against batch size (log axis): each distinct original dashed grey, each run in its colour
    /// under its label.
    static func latencyAgainstBatch(_ runs: ReportRuns) -> String {
        let name = "latency-batch", title = "Latency against batch size"
        var series: [ReportCharts.Series] = []
        var seenOriginals = Set<String>()
        for (index, report) in runs.reports.enumerated() {
            let key = "\(report.original.path)|\(report.original.macs)|\(report.device)"
            if !report.original.latency.isEmpty && seenOriginals.insert(key).inserted {
                series.append(.init(name: "original", color: ReportCharts.originalColor,
                                    points: report.original.latency.map { (Double($0.batch), $0.latencyMsMedian) },
                                    dashed: true, role: "original"))
            }
            if !report.pruned.latency.isEmpty {
                series.append(.init(name: runs.labels[index], color: runs.colors[index],
                                    points: report.pruned.latency.map { (Double($0.batch), $0.latencyMsMedian) },
                                    role: "run"))
            }
        }
        let points = series.flatMap(\.points)
        guard !points.isEmpty else { return ReportCharts.empty(name, title: title, reason: "no latency measured") }
        let batches = Array(Set(points.map(\.x))).sorted()
        var frame = ReportCharts.Frame(xs: points.map(\.x), ys: points.map(\.y), logX: true, includeZeroY: true)
        frame.makeRoomForLegend()
        return ReportCharts.open(name, frame, title: title)
            + ReportCharts.axes(frame, xLabel: "batch size (log scale)", yLabel: "median latency (ms)", xTicks: batches)
            + ReportCharts.plot(series, frame) + "</svg>\n"
    }

    /// Each training phase's curves over epochs, one panel per quantity (they have different scales): the
    /// method's loss and terms (its search), validation accuracy, then fine-tuning's loss.
    static func trainingCurves(_ name: String, _ report: PruneReport) -> String {
        let title = "Training and search curves (per epoch)"
        var panels: [ReportCharts.Series] = []
        func add(_ label: String, _ history: TrainingHistory?, color: String, _ value: (EpochRecord) -> Double?) {
            guard let epochs = history?.epochs, !epochs.isEmpty else { return }
            let points = epochs.compactMap { record in value(record).map { (Double(record.epoch), $0) } }
            if !points.isEmpty { panels.append(.init(name: label, color: color, points: points)) }
        }
        add("\(report.method): loss", report.methodHistory, color: ReportCharts.palette[0]) { $0.trainLoss }
        let terms = Set(report.methodHistory?.epochs.flatMap { $0.terms?.keys.map { $0 } ?? [] } ?? []).sorted()
        for (index, term) in terms.enumerated() {
            add("\(report.method): \(term)", report.methodHistory,
                color: ReportCharts.palette[(index + 1) % ReportCharts.palette.count]) { $0.terms?[term] }
        }
        add("\(report.method): validation", report.methodHistory, color: ReportCharts.palette[4]) {
            $0.validation?.accuracy.map { $0 * 100 }
        }
        add("fine-tuning: loss", report.finetuneHistory, color: ReportCharts.palette[2]) { $0.trainLoss }
        add("fine-tuning: validation", report.finetuneHistory, color: ReportCharts.palette[3]) {
            $0.validation?.accuracy.map { $0 * 100 }
        }
        guard !panels.isEmpty else {
            return ReportCharts.empty(name, title: title, reason: "no training phase in this run")
        }
        return panelChart(name, title: title, panels: panels, xLabel: "epoch")
    }

    /// A method that prunes while it trains (CPD): after every cut, the MACs and parameters kept and the
    /// validation accuracy right after the cut, against the training step.
    static func pruningTrajectory(_ name: String, _ steps: [PruningStepRecord]) -> String {
        let title = "Pruning trajectory (per cut)"
        func series(_ label: String, _ color: Int, _ value: (PruningStepRecord) -> Double?) -> ReportCharts.Series? {
            let points = steps.compactMap { step in value(step).map { (Double(step.step), $0 * 100) } }
            return points.isEmpty ? nil : .init(name: label, color: ReportCharts.palette[color], points: points)
        }
        let panels = [series("MACs kept (%)", 0) { $0.macsFraction }, series("parameters kept (%)", 1) { $0.paramsFraction },
                      series("validation after the cut (%)", 4) { $0.validationAccuracy }].compactMap { $0 }
        guard !panels.isEmpty else { return ReportCharts.empty(name, title: title, reason: "no cuts in this run") }
        return panelChart(name, title: title, panels: panels, xLabel: "step")
    }

    /// One small panel per series (they have different scales), three to a row.
    static func panelChart(_ name: String, title: String, panels: [ReportCharts.Series], xLabel: String) -> String {
        let panelWidth = 230.0, panelHeight = 150.0
        let columns = min(panels.count, 3)
        let rows = (panels.count + columns - 1) / columns
        var outer = ReportCharts.Frame(xs: [0, 1], ys: [0, 1])
        outer.width = max(460, panelWidth * Double(columns))
        outer.height = 24 + panelHeight * Double(rows)
        var svg = ReportCharts.open(name, outer, title: title)
        for (index, series) in panels.enumerated() {
            var frame = ReportCharts.Frame(xs: series.points.map(\.x), ys: series.points.map(\.y))
            frame.width = panelWidth
            frame.height = panelHeight
            frame.left = 44
            frame.top = 22
            frame.right = 10
            frame.bottom = 30
            let xs = series.points.map(\.x)
            svg += "<g transform=\"translate(\(Double(index % columns) * panelWidth),\(24 + Double(index / columns) * panelHeight))\">"
                + "<text x=\"44\" y=\"14\" font-size=\"11\">\(ReportCharts.escape(series.name))</text>"
                + ReportCharts.axes(frame, xLabel: xLabel, yLabel: "", xTicks: xs.count <= 8 ? xs : nil)
            svg += ReportCharts.plot([series], frame, legend: false) + "</g>"
        }
        return svg + "</svg>\n"
    }
}
