import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// How a `--target-latency` was met, for the budget line and the report: the table's prediction and the measured
/// latency of the shape chosen, and how many shapes were timed for real.
public struct LatencySolveRecord: Codable, Equatable, Sendable {
    /// The table solved from (`--latency-table`), its FNV-1a hash; nil when every shape tried was measured.
    public var tablePath: String?
    public var tableHash: String?
    /// The table's prediction for the shape chosen (nil when the shape came from the measured bisection).
    public var predictedMilliseconds: Double?
    public var measuredMilliseconds: Double
    /// Shapes timed on the device while solving (each at most once).
    public var measurements: Int
    /// Solves on the table, each ending with a measurement of its shape.
    public var tableRounds: Int
    /// Why the table's shapes did not do and every shape tried was measured instead (nil: they did, or no table).
    public var fallback: String?

    enum CodingKeys: String, CodingKey {
        case tablePath = "table_path"
        case tableHash = "table_hash"
        case predictedMilliseconds = "predicted_ms"
        case measuredMilliseconds = "measured_ms"
        case measurements
        case tableRounds = "table_rounds"
        case fallback
    }

    /// `solved from the table T (hash): predicted 11.95 ms, 2 shapes measured`, or how the solve measured.
    public var summary: String {
        let timed = "\(measurements) shape\(measurements == 1 ? "" : "s") measured"
        guard let tablePath else { return "solved by measuring every shape tried, \(timed)" }
        let table = "the table \(tablePath) (\(tableHash ?? ""))"
        if let fallback {
            return "\(tableRounds) solve\(tableRounds == 1 ? "" : "s") on \(table) missed (\(fallback)); solved by "
                + "measuring, \(timed)"
        }
        return "solved from \(table): predicted "
            + "\(Formatting.fixed(predictedMilliseconds ?? measuredMilliseconds, decimals: 2)) ms, \(timed)"
    }
}

extension Budget {
    /// Solves on the table before the solve measures every shape instead: each solve ends with a measurement, and
    /// each measurement recalibrates the prediction (`LatencyPrediction`), so a table right up to an offset meets
    /// the target at the second and one off by a factor too at the third.
    static let tableSolves = 4

    /// A shape timed while solving a latency target.
    private struct Measured {
        var ratio: Double
        var plan: KeepPlan
        var shape: ViTConfig
        var milliseconds: Double
        var predicted: Double?
    }

    /// A latency target of `goal` milliseconds at `batch`. With `latencyTable` the bisection predicts each shape from
    /// the table and the shape it settles on is measured; a measurement more than `LatencyMeter.tolerance` off the
    /// goal recalibrates the prediction and solves again, at most `tableSolves` times. Without a table, or when the
    /// table cannot predict the shapes or its shapes keep missing, every shape the bisection tries is measured (the
    /// shapes measured already are not timed again) and the shape measured nearest the goal wins.
    func solveLatency(_ goal: Double, batch: Int, config: ViTConfig, original: ViTConfig,
                      nativeFamilies: [SpaceFamily], meter: LatencyMeter,
                      planAt: (Double) throws -> KeepPlan) throws -> (KeepPlan, BudgetOutcome) {
        let before = meter.measurements
        let families = nativeFamilies.map(\.rawValue).joined(separator: ", ")
        func outOfReach(_ smallest: Double) -> PruneError {
            PruneError.invalidBudget("target latency \(goal) ms at batch \(batch) is out of reach by pruning "
                + "\(families): the smallest model this method cuts takes \(Formatting.fixed(smallest, decimals: 2)) "
                + "ms on this device; ask for at least that")
        }
        var record = LatencySolveRecord(tablePath: latencyTable?.path, tableHash: latencyTable?.hash,
                                        measuredMilliseconds: 0, measurements: 0, tableRounds: 0)
        var measured: [Measured] = []
        var chosen: Measured?
        if let latencyTable {
            var prediction = LatencyPrediction(table: latencyTable.table)
            let pass = PassMonitor.begin("latency search on the table", total: Self.tableSolves, unit: "shapes")
            defer { pass.end() }
            solving: for _ in 0..<Self.tableSolves {
                let found: (ratio: Double, plan: KeepPlan, achieved: Double)
                do {
                    // Looking a shape up costs microseconds: the bisection resolves the ratio fully.
                    found = try Self.bisect(goal: goal, halvings: 40, planAt: planAt) { plan in
                        try prediction.milliseconds(try plan.prunedConfig(of: config), near: goal)
                    }
                } catch let unpredictable as LatencyPrediction.Unpredictable {
                    record.fallback = unpredictable.description
                    break solving
                }
                let shape = try found.plan.prunedConfig(of: config)
                if measured.contains(where: { $0.shape == shape }) {
                    record.fallback = "recalibrated, the table chose a shape measured already"
                    break solving
                }
                record.tableRounds += 1
                let milliseconds = try meter.milliseconds(shape)
                try pass.advance(1)
                prediction.record(table: try prediction.tableMilliseconds(shape), measured: milliseconds)
                let next = Measured(ratio: found.ratio, plan: found.plan, shape: shape, milliseconds: milliseconds,
                                    predicted: found.achieved)
                measured.append(next)
                // On the target, or under it at the largest shape the budget allows (`--round-to table` may round
                // even the full widths down): no solve can do better.
                let onTarget = abs(milliseconds - goal) <= LatencyMeter.tolerance * goal
                if try onTarget || (milliseconds < goal && shape == planAt(1).prunedConfig(of: config)) {
                    chosen = next
                    break solving
                }
                // The table settled on the smallest cut and it is measured over the goal by more than the noise.
                // One timing is not enough to call the target out of reach (a load spike made the smallest cut of
                // fm-vit-b measure 8.1 ms where larger ones took 6.7): the measured bisection decides, on all its
                // timings.
                if milliseconds > goal * (1 + LatencyMeter.tolerance),
                   shape == (try planAt(0x1p-40).prunedConfig(of: config)) {
                    record.fallback = "the table's smallest cut measured \(Formatting.fixed(milliseconds, decimals: 2)) "
                        + "ms, over the target"
                    break solving
                }
            }
            if chosen == nil && record.fallback == nil {
                let last = measured.last
                record.fallback = "\(record.tableRounds) shapes measured over \(Int(LatencyMeter.tolerance * 100))% "
                    + "from the target, the last predicted \(Formatting.fixed(last?.predicted ?? 0, decimals: 2)) ms "
                    + "and measured \(Formatting.fixed(last?.milliseconds ?? 0, decimals: 2)) ms"
            }
        }
        if chosen == nil {
            // A measured bisection times a model per halving: a pass of its own for progress and Ctrl-C. A
            // measured latency is noisy (±5% on a shared machine) and each measurement costs forwards: 14 halvings
            // resolve the ratio to 1e-4, and configurations measured once are not measured again.
            let halvings = 14
            let pass = PassMonitor.begin("latency search", total: halvings + 1, unit: "shapes")
            let best = try Self.bisect(goal: goal, halvings: halvings, planAt: planAt, step: { try pass.advance(1) }) {
                plan in try meter.milliseconds(try plan.prunedConfig(of: config))
            }
            pass.end()
            measured.append(Measured(ratio: best.ratio, plan: best.plan, shape: try best.plan.prunedConfig(of: config),
                                     milliseconds: best.achieved))
            // The table's shapes were measured too: the nearest of all wins.
            chosen = measured.min { abs($0.milliseconds - goal) < abs($1.milliseconds - goal) }
            // A latency target under the smallest cut's time (the bisection ends there when the goal is below
            // it) is an error, with the time that cut takes, unless within the timing noise.
            if let chosen, chosen.milliseconds > goal * (1 + LatencyMeter.tolerance) {
                throw outOfReach(chosen.milliseconds)
            }
        }
        guard let chosen else { throw PruneError.invalidBudget("a latency target solved to no shape") }
        record.predictedMilliseconds = chosen.predicted
        record.measuredMilliseconds = chosen.milliseconds
        record.measurements = meter.measurements - before
        var outcome = BudgetOutcome(original: original, pruned: chosen.shape, nativeRatio: chosen.ratio,
                                    target: .latency(milliseconds: goal, batch: batch))
        outcome.measuredLatencyMilliseconds = chosen.milliseconds
        outcome.latencySolve = record
        return (chosen.plan, outcome)
    }
}
