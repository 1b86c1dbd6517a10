/// How a kept count is rounded before the channels are chosen (`--round-to`), the same for every method that
/// selects counts (magnitude, taylor, random, obs, vbp, slim: `rounded`) and for the two whose widths must not
/// exceed what they computed (vulcan's budget, cpd's cuts: `roundedDown`).
public enum WidthRounding: Equatable, Sendable {
    /// `--round-to K`: the nearest multiple of K, at least K (and 1), at most all. K = 1 keeps the count as asked.
    case multiple(Int)
    /// `--round-to table --latency-table T`: the width the table measured fastest per kept channel, never above
    /// the count asked (`fastestWidth`).
    case table(LoadedLatencyTable)

    /// How far below the count asked the table may round, in channels: the larger of 8 and an eighth of the count
    /// (about what `--round-to 8` or 16 moves a width), so that a width is never cut far below what the method
    /// asked for on the strength of a timing.
    public static func tableReach(_ count: Int) -> Int { max(8, count / 8) }

    /// Two widths' latencies per channel closer than this (relative) count as equally fast: the table's noise on a
    /// shared machine (alternated medians) is about 1–2%.
    public static let tableTolerance = 0.02

    public func validate() throws {
        if case .multiple(let k) = self, k < 1 { throw PruneError.invalidBudget("round-to \(k) must be at least 1") }
    }

    /// The count to keep in a space of `kind` with `size` groups when `count` were asked.
    public func rounded(_ count: Int, size: Int, kind: SpaceKind) -> Int {
        switch self {
        case .multiple(let k):
            let multiple = Int((Double(count) / Double(k)).rounded()) * k
            return min(size, max(k, multiple, 1))
        case .table(let loaded):
            let asked = min(size, max(1, count))
            return Self.fastestWidth(asked: asked, latency: { loaded.table.milliseconds(kind, width: $0) })
        }
    }

    /// The count rounded never up past what the rule allows, for a method whose own rule rounds down (Vulcan keeps
    /// "real pruning ≥ R"; CPD's cuts must remove channels): a multiple of K at or below `count`, but at least K
    /// (a space of at most K stays whole); a table's width (which never exceeds the count asked). With
    /// `.multiple(8)` this is Vulcan's rule `max(8, 8·⌊count/8⌋)`, at most `size`.
    public func roundedDown(_ count: Int, size: Int, kind: SpaceKind) -> Int {
        switch self {
        case .multiple(let k):
            guard size > k else { return max(1, size) }
            return min(size, max(k, k * (max(0, count) / k)))
        case .table:
            return rounded(count, size: size, kind: kind)
        }
    }

    /// The table's rule: among the measured widths w with `asked − tableReach(asked) < w ≤ asked` (and w ≥ 1), the
    /// lowest latency per kept channel (latency(w) / w); of the widths within `tableTolerance` of it, the largest.
    /// With no measured width in reach (a kind the table does not cover: head counts, the residual) the count
    /// stays as asked.
    public static func fastestWidth(asked: Int, latency: (Int) -> Double?) -> Int {
        let lowest = max(1, asked - tableReach(asked) + 1)
        guard asked >= lowest else { return asked }
        let candidates = (lowest ... asked).compactMap { w in latency(w).map { (width: w, perChannel: $0 / Double(w)) } }
        guard let best = candidates.map(\.perChannel).min() else { return asked }
        return candidates.filter { $0.perChannel <= best * (1 + tableTolerance) }.map(\.width).max() ?? asked
    }

    /// What the rounding is, for the budget line: `round-to 8`, `round-to table T (fnv1a64:…)`.
    public var summary: String {
        switch self {
        case .multiple(let k): return "round-to \(k)"
        case .table(let loaded): return "round-to table \(loaded.path) (\(loaded.hash))"
        }
    }
}
