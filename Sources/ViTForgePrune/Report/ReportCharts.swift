import Foundation

/// Inline-SVG charts for the HTML report: plain elements only (no scripts, fonts or images), so the page renders
/// the same offline in any browser. Every chart is one `<svg class="chart" data-chart="NAME">`, which the CI check
/// counts in the rendered page.
enum ReportCharts {
    /// One colour per method (and grey for unpruned models), in the order methods first appear.
    static let palette = ["#2f6db5", "#d1495b", "#2a9d5b", "#e49b0f", "#7b4fb0", "#1b998b", "#b5651d", "#c2185b"]
    static let originalColor = "#8a8a8a"

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func number(_ value: Double) -> String { String(format: "%.1f", value) }

    /// A value formatted for an axis tick: few digits, no trailing zeros.
    static func tick(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 100 || value == value.rounded() { return String(format: "%.0f", value) }
        if magnitude >= 1 { return String(format: "%.1f", value) }
        if magnitude >= 0.01 { return String(format: "%.3f", value) }
        return String(format: "%.2g", value)
    }

    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
        var dashed = false
        var connect = true
        /// Points drawn as rings: an accuracy measured on a class subset only.
        var hollow = false
        /// `original` or `run`, written on the points (`class="point run"`) for checks of the page.
        var role: String?
    }

    /// The plotting frame: a data range mapped onto the SVG's inner rectangle (`logX`: base-2 log axis, for batch
    /// sizes).
    struct Frame {
        var width = 460.0, height = 260.0
        var left = 56.0, right = 16.0, top = 30.0, bottom = 40.0
        var xRange: ClosedRange<Double>
        var yRange: ClosedRange<Double>
        var logX = false

        init(xs: [Double], ys: [Double], logX: Bool = false, includeZeroY: Bool = false) {
            self.logX = logX
            let xv = logX ? xs.map { log2(max($0, 1e-9)) } : xs
            xRange = Frame.padded(xv, fromZero: false)
            yRange = Frame.padded(ys, fromZero: includeZeroY)
        }

        /// The values' range with 6% to spare on each side (`fromZero`: starting exactly at 0).
        static func padded(_ values: [Double], fromZero: Bool) -> ClosedRange<Double> {
            let finite = values.filter(\.isFinite)
            var low = fromZero ? 0 : finite.min() ?? 0, high = finite.max() ?? 1
            if high - low < 1e-12 { low -= max(abs(low) * 0.1, 0.5); high += max(abs(high) * 0.1, 0.5) }
            let pad = (high - low) * 0.06
            return (fromZero ? 0 : low - pad)...(high + pad)
        }

        func x(_ value: Double) -> Double {
            let v = logX ? log2(max(value, 1e-9)) : value
            return left + (v - xRange.lowerBound) / (xRange.upperBound - xRange.lowerBound) * (width - left - right)
        }

        func y(_ value: Double) -> Double {
            top + (yRange.upperBound - value) / (yRange.upperBound - yRange.lowerBound) * (height - top - bottom)
        }

        /// Widens the chart by a column right of the plotting area for the legend, which then covers no data.
        mutating func makeRoomForLegend() {
            width += ReportCharts.legendWidth
            right += ReportCharts.legendWidth
        }

        /// The legend column's left edge: right of the plotting area.
        var legendX: Double { width - right + 14 }
    }

    static func open(_ name: String, _ frame: Frame, title: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" data-chart=\"\(escape(name))\" "
            + "width=\"\(Int(frame.width))\" height=\"\(Int(frame.height))\" role=\"img\" "
            + "aria-label=\"\(escape(title))\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>"
            + "<text x=\"4\" y=\"18\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>"
    }

    /// Axes with five ticks each, axis labels and (for `logX`) ticks at the data's own x values.
    static func axes(_ frame: Frame, xLabel: String, yLabel: String, xTicks: [Double]? = nil) -> String {
        let f = frame
        var svg = "<g stroke=\"#444\" stroke-width=\"1\"><line x1=\"\(f.left)\" y1=\"\(f.height - f.bottom)\" "
            + "x2=\"\(f.width - f.right)\" y2=\"\(f.height - f.bottom)\"/><line x1=\"\(f.left)\" y1=\"\(f.top)\" "
            + "x2=\"\(f.left)\" y2=\"\(f.height - f.bottom)\"/></g><g font-size=\"10\" fill=\"#444\">"
        let xs = xTicks ?? (0...4).map { f.xRange.lowerBound + Double($0) / 4 * (f.xRange.upperBound - f.xRange.lowerBound) }
        for value in xs {
            let px = f.x(value)
            svg += "<line x1=\"\(number(px))\" y1=\"\(f.height - f.bottom)\" x2=\"\(number(px))\" "
                + "y2=\"\(f.height - f.bottom + 4)\" stroke=\"#444\"/><text x=\"\(number(px))\" "
                + "y=\"\(f.height - f.bottom + 15)\" text-anchor=\"middle\">\(tick(value))</text>"
        }
        for index in 0...4 {
            let value = f.yRange.lowerBound + Double(index) / 4 * (f.yRange.upperBound - f.yRange.lowerBound)
            let py = f.y(value)
            svg += "<line x1=\"\(f.left - 4)\" y1=\"\(number(py))\" x2=\"\(f.width - f.right)\" y2=\"\(number(py))\" "
                + "stroke=\"#eee\"/><text x=\"\(f.left - 6)\" y=\"\(number(py + 3))\" text-anchor=\"end\">\(tick(value))</text>"
        }
        svg += "<text x=\"\(number((f.left + f.width - f.right) / 2))\" y=\"\(f.height - 6)\" text-anchor=\"middle\">"
            + "\(escape(xLabel))</text><text x=\"12\" y=\"\(number((f.top + f.height - f.bottom) / 2))\" "
            + "text-anchor=\"middle\" transform=\"rotate(-90 12 \(number((f.top + f.height - f.bottom) / 2)))\">"
            + "\(escape(yLabel))</text></g>"
        return svg
    }

    /// Lines (or bare points) for each series, with a legend right of the plotting area unless `legend` is false.
    static func plot(_ series: [Series], _ frame: Frame, legend showsLegend: Bool = true, notes: [String] = [])
        -> String {
        var svg = ""
        for item in series {
            let points = item.points.filter { $0.x.isFinite && $0.y.isFinite }
            if item.connect && points.count > 1 {
                let path = points.map { "\(number(frame.x($0.x))),\(number(frame.y($0.y)))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"\(item.color)\" stroke-width=\"2\""
                    + (item.dashed ? " stroke-dasharray=\"5 3\"" : "") + " points=\"\(path)\"/>"
            }
            let paint = item.hollow ? "fill=\"#fff\" stroke=\"\(item.color)\" stroke-width=\"2\""
                : "fill=\"\(item.color)\""
            let role = item.role.map { " class=\"point \($0)\" data-label=\"\(escape(item.name))\"" } ?? ""
            for point in points {
                svg += "<circle\(role) cx=\"\(number(frame.x(point.x)))\" cy=\"\(number(frame.y(point.y)))\" "
                    + "r=\"\(item.hollow ? 4 : 3.5)\" \(paint)><title>\(escape(item.name)): \(tick(point.x)), "
                    + "\(tick(point.y))</title></circle>"
            }
        }
        return showsLegend ? svg + legend(series, frame, notes: notes) : svg
    }

    /// Room right of the plotting area for the legend (`Frame.makeRoomForLegend`).
    static let legendWidth = 210.0
    /// Characters of a legend line before it wraps.
    static let legendLineLength = 34
    static let legendRowHeight = 13.0

    /// One entry per distinct series name, right of the plotting area: a swatch (a line for connected series, a dot
    /// or ring for points) and the name, wrapped to the column; then `notes` in grey (what rings and hollow points
    /// mean).
    static func legend(_ series: [Series], _ frame: Frame, notes: [String] = []) -> String {
        var seen = Set<String>(), svg = "<g class=\"legend\" font-size=\"10\">"
        var y = frame.top + 4
        for item in series where seen.insert(item.name).inserted {
            let x = frame.legendX
            if item.connect && item.points.count > 1 {
                svg += "<line class=\"legend-key\" x1=\"\(number(x))\" y1=\"\(number(y + 4))\" x2=\"\(number(x + 12))\" "
                    + "y2=\"\(number(y + 4))\" stroke=\"\(item.color)\" stroke-width=\"2\""
                    + (item.dashed ? " stroke-dasharray=\"4 2\"" : "") + "/>"
            } else {
                svg += "<circle class=\"legend-key\" cx=\"\(number(x + 6))\" cy=\"\(number(y + 4))\" r=\"4\" "
                    + (item.hollow ? "fill=\"#fff\" stroke=\"\(item.color)\" stroke-width=\"2\"/>" : "fill=\"\(item.color)\"/>")
            }
            let lines = wrapped(item.name, width: legendLineLength)
            svg += "<text class=\"legend-label\" x=\"\(number(x + 17))\" y=\"\(number(y + 8))\">"
                + lines.enumerated().map { index, line in
                    "<tspan x=\"\(number(x + 17))\" dy=\"\(index == 0 ? 0 : legendRowHeight)\">\(escape(line))</tspan>"
                }.joined() + "</text>"
            y += legendRowHeight * Double(lines.count) + 3
        }
        y += 8
        for note in notes {
            for line in wrapped(note, width: legendLineLength + 2) {
                svg += "<text class=\"legend-note\" x=\"\(number(frame.legendX))\" y=\"\(number(y + 8))\" "
                    + "fill=\"#555\">\(escape(line))</text>"
                y += legendRowHeight
            }
        }
        return svg + "</g>"
    }

    /// `text` broken at spaces into lines of at most `width` characters (a longer word stands alone).
    static func wrapped(_ text: String, width: Int) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        return lines + (line.isEmpty ? [] : [line])
    }

    /// A chart that has nothing to show still appears (so a page's charts can be counted), saying why it is empty.
    static func empty(_ name: String, title: String, reason: String) -> String {
        let frame = Frame(xs: [0, 1], ys: [0, 1])
        return open(name, frame, title: title)
            + "<text x=\"\(frame.width / 2)\" y=\"\(frame.height / 2)\" text-anchor=\"middle\" font-size=\"12\" "
            + "fill=\"#666\">\(escape(reason))</text></svg>\n"
    }

    /// Points not dominated by another (no other point has MACs ≤ and accuracy ≥ with one strictly better), by MACs.
    static func paretoFront(_ points: [(macs: Double, accuracy: Double)]) -> [(macs: Double, accuracy: Double)] {
        points.filter { point in
            !points.contains { other in
                other.macs <= point.macs && other.accuracy >= point.accuracy
                    && (other.macs < point.macs || other.accuracy > point.accuracy)
            }
        }.sorted { ($0.macs, $0.accuracy) < ($1.macs, $1.accuracy) }
    }

    /// Per-block bars of one quantity: the original's as an outline, the pruned model's filled inside it.
    static func blockBars(_ name: String, title: String, original: [Int], pruned: [Int], color: String,
                          width: Double = 230, height: Double = 170) -> String {
        var frame = Frame(xs: [0, 1], ys: [0, Double(max(original.max() ?? 1, pruned.max() ?? 1, 1))],
                          includeZeroY: true)
        frame.width = width
        frame.height = height
        frame.left = 40
        frame.right = 8
        frame.yRange = 0...(Double(max(original.max() ?? 1, pruned.max() ?? 1, 1)) * 1.08)
        var svg = open(name, frame, title: title) + axes(frame, xLabel: "block", yLabel: "", xTicks: [])
        let count = max(original.count, pruned.count, 1)
        let slot = (frame.width - frame.left - frame.right) / Double(count)
        let base = frame.y(0)
        for index in 0..<count {
            let x = frame.left + Double(index) * slot + slot * 0.15
            let barWidth = slot * 0.7
            if index < original.count {
                let top = frame.y(Double(original[index]))
                svg += "<rect x=\"\(number(x))\" y=\"\(number(top))\" width=\"\(number(barWidth))\" "
                    + "height=\"\(number(base - top))\" fill=\"none\" stroke=\"\(originalColor)\" stroke-dasharray=\"3 2\"/>"
            }
            if index < pruned.count {
                let top = frame.y(Double(pruned[index]))
                svg += "<rect x=\"\(number(x + barWidth * 0.15))\" y=\"\(number(top))\" width=\"\(number(barWidth * 0.7))\" "
                    + "height=\"\(number(base - top))\" fill=\"\(color)\"><title>block \(index): \(pruned[index]) of "
                    + "\(index < original.count ? original[index] : 0)</title></rect>"
            }
            svg += "<text x=\"\(number(x + barWidth / 2))\" y=\"\(number(base + 12))\" font-size=\"9\" "
                + "text-anchor=\"middle\">\(index)</text>"
        }
        return svg + "</svg>\n"
    }

    /// The phases in the order they ran, as consecutive segments of one bar (length ∝ seconds), numbered, with a
    /// key below listing each phase and its time.
    static func phaseTimeline(_ name: String, title: String, phases: [PruneReport.PhaseTime]) -> String {
        var frame = Frame(xs: [0, 1], ys: [0, 1])
        frame.height = 64 + 14 * Double(phases.count)
        let total = max(phases.reduce(0) { $0 + $1.seconds }, 1e-9)
        var svg = open(name, frame, title: title)
        var x = 8.0
        let span = frame.width - 16
        for (index, phase) in phases.enumerated() {
            let length = max(phase.seconds / total * span, 1)
            let color = palette[index % palette.count]
            svg += "<rect x=\"\(number(x))\" y=\"28\" width=\"\(number(length))\" height=\"22\" fill=\"\(color)\">"
                + "<title>\(index + 1). \(escape(phase.name)): \(String(format: "%.2f", phase.seconds)) s</title></rect>"
            if length > 14 {
                svg += "<text x=\"\(number(x + 3))\" y=\"43\" font-size=\"10\" fill=\"#fff\">\(index + 1)</text>"
            }
            let keyY = 66 + 14 * Double(index)
            svg += "<rect x=\"8\" y=\"\(number(keyY - 9))\" width=\"9\" height=\"9\" fill=\"\(color)\"/>"
                + "<text x=\"22\" y=\"\(number(keyY))\" font-size=\"11\">\(index + 1). \(escape(phase.name)): "
                + "\(String(format: "%.1f", phase.seconds)) s</text>"
            x += length
        }
        return svg + "</svg>\n"
    }

    /// The patch grid of a token-pruned model: one cell per patch, row by row as the image is cut, shaded by how
    /// many blocks (from the first) run on it, numbered, with the block range in each cell's tooltip. A patch the
    /// first block already drops is white; one every block keeps is the run's full colour.
    static func tokenGrid(_ name: String, title: String, tokens: PruneReport.TokenSets, color: String) -> String {
        let depth = tokens.sets.count, side = max(tokens.gridSide, 1)
        let counts = tokens.blocksKeeping
        let cell = min(24.0, max(6.0, 260.0 / Double(side)))
        var frame = Frame(xs: [0, 1], ys: [0, 1])
        frame.width = max(230, 16 + cell * Double(side))
        frame.height = 28 + cell * Double(side) + 40
        var svg = open(name, frame, title: title)
        for (patch, count) in counts.enumerated() {
            let x = 8 + Double(patch % side) * cell, y = 28 + Double(patch / side) * cell
            let kept = count == 0 ? "dropped before block 0" : count == 1 ? "kept by block 0 only"
                : "kept by blocks 0–\(count - 1)"
            svg += "<rect class=\"patch\" data-blocks=\"\(count)\" x=\"\(number(x))\" y=\"\(number(y))\" "
                + "width=\"\(number(cell))\" height=\"\(number(cell))\" fill=\"\(color)\" "
                + "fill-opacity=\"\(String(format: "%.2f", depth > 0 ? Double(count) / Double(depth) : 0))\" "
                + "stroke=\"#ccc\"><title>patch \(patch) (row \(patch / side), column \(patch % side)): \(kept) "
                + "of \(depth)</title></rect>"
            if cell >= 14 {
                svg += "<text x=\"\(number(x + cell / 2))\" y=\"\(number(y + cell / 2 + 3))\" font-size=\"9\" "
                    + "text-anchor=\"middle\">\(count)</text>"
            }
        }
        let keyY = 28 + cell * Double(side) + 16
        svg += "<text x=\"8\" y=\"\(number(keyY))\" font-size=\"10\">number: blocks (of \(depth)) that run on the "
            + "patch</text><text x=\"8\" y=\"\(number(keyY + 13))\" font-size=\"10\">"
            + "\(tokens.prefixTokens == 1 ? "the class token is" : "the \(tokens.prefixTokens) prefix tokens are") "
            + "always kept</text>"
        return svg + "</svg>\n"
    }
}
