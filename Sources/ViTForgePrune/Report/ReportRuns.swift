import Foundation
import ViTForgeModel

/// What the report page needs to tell runs apart: one label and one colour per run, used by every chart and the
/// table alike; what each accuracy was measured on; the budget asked for against what was reached.
struct ReportRuns {
    let reports: [PruneReport]
    /// Per run: the caller's name (file names for `vitforge report`), else `method · budget asked`.
    let labels: [String]
    /// Per run, from the palette in run order.
    let colors: [String]

    init(_ reports: [PruneReport], names: [String]?) {
        self.reports = reports
        labels = names ?? reports.map { "\($0.method) · \(Self.askedBudget($0))" }
        colors = reports.indices.map { ReportCharts.palette[$0 % ReportCharts.palette.count] }
    }

    /// The images an accuracy was measured on: the data set and the class subset (nil: every class). Accuracies on
    /// different sets are different quantities: each set gets its own original point and its own Pareto front.
    struct EvaluationSet: Hashable {
        var data: String
        var classes: [Int]?

        var isSubset: Bool { classes != nil }

        /// `fashion-mnist`, or `fashion-mnist, classes 0,2,6 only`.
        var caption: String { subsetCaption.map { "\(data), \($0)" } ?? data }

        /// `classes 0,2,6 only`; nil for every class.
        var subsetCaption: String? { classes.map { "classes \($0.map(String.init).joined(separator: ",")) only" } }

        /// What a chart's legend adds to a label: the subset, and the data's last path component when the page
        /// shows several data sets (full paths do not fit a legend; the table has them).
        func legendSuffix(severalDataSets: Bool) -> String {
            let parts = (severalDataSets ? [(data as NSString).lastPathComponent] : []) + [subsetCaption].compactMap { $0 }
            return isSubset || severalDataSets ? " (\(parts.joined(separator: ", ")))" : ""
        }
    }

    /// The report's own fields, or for an older report the `--data` and `--classes` of its command line (numeric
    /// classes only; names cannot be resolved without the data).
    static func evaluationSet(_ report: PruneReport) -> EvaluationSet {
        let data = report.data ?? flagValue("--data", in: report.command) ?? "fashion-mnist"
        let classes = report.classes ?? flagValue("--classes", in: report.command).map { list in
            list.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        return EvaluationSet(data: data, classes: classes)
    }

    /// The budget as asked for: the report's field, else the budget flags of its command line, else the first line
    /// of what was reached.
    static func askedBudget(_ report: PruneReport) -> String {
        if let asked = report.budgetAsked { return asked }
        let flags = ["--keep-mlp", "--keep-heads", "--keep-residual", "--keep-attn", "--target-params", "--target-macs",
                     "--target-latency", "--latency-batch", "--prune-ratio"]
        let given = flags.compactMap { flag in flagValue(flag, in: report.command).map { "\(flag) \($0)" } }
        if !given.isEmpty { return given.joined(separator: " ") }
        return report.budget.split(separator: "\n").first.map(String.init) ?? report.budget
    }

    /// What the run reached, in the terms of every budget: MACs and parameters kept, and for a latency target the
    /// pruned model's time at that batch.
    static func reachedBudget(_ report: PruneReport) -> String {
        var parts = ["MACs \(Formatting.percent(report.macsFraction))",
                     "params \(Formatting.percent(report.paramsFraction))"]
        if let batch = flagValue("--latency-batch", in: report.command).flatMap({ Int($0) }) ?? (
            flagValue("--target-latency", in: report.command) == nil ? nil : 1),
           let timing = report.pruned.latency.first(where: { $0.batch == batch }) {
            parts.append("\(Formatting.fixed(timing.latencyMsMedian, decimals: 2)) ms at batch \(batch)")
        }
        return parts.joined(separator: ", ")
    }

    /// The value after `flag` in a recorded command line (`--flag value` or `--flag=value`).
    static func flagValue(_ flag: String, in command: String) -> String? {
        let words = command.split(separator: " ").map(String.init)
        for (index, word) in words.enumerated() {
            if word == flag, index + 1 < words.count { return words[index + 1] }
            if word.hasPrefix(flag + "=") { return String(word.dropFirst(flag.count + 1)) }
        }
        return nil
    }
}
