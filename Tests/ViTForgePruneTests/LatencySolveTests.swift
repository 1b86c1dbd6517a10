import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeTestBasics
@testable import ViTForgePrune

/// `--target-latency` solved from a latency table (`Budget.solveLatency`, `LatencyPrediction`): no clock is read.
/// The meter is the cost model of `VITFORGE_FAULT_LATENCY_MS_PER_GMAC` (K ms per 10⁹ MACs of the batch), counting
/// the shapes it is asked to time; the tables are made up from the same MACs, layer by layer, so a table can be
/// right (up to the patch embedding and head it does not cover), off by a factor, or useless.
struct LatencySolveTests {
    static let batch = 2, millisecondsPerGMAC = 3.0

    /// The fault-injection meter's cost model, counting the shapes it times.
    final class CountingMeter {
        var count = 0
        lazy var meter = LatencyMeter(batch: LatencySolveTests.batch) { [unowned self] shape in
            self.count += 1
            return LatencySolveTests.modelMilliseconds(shape)
        }
    }

    static func modelMilliseconds(_ shape: ViTConfig) -> Double {
        millisecondsPerGMAC * Double(shape.cost().macs * batch) / 1e9
    }

    /// fm-vit-b's table whose layers cost what the cost model charges their MACs, times `factor`.
    static func macTable(_ config: ViTConfig, factor: Double = 1, batch: Int = batch) throws -> LoadedLatencyTable {
        let table = try LayerLatencyMeasurement.measure(config: config, batch: batch, rounds: 1, backend: CPUBackend(),
                                                        costModel: factor * millisecondsPerGMAC)
        return LoadedLatencyTable(table: table, path: "made-up-\(factor).json", hash: "fnv1a64:0123456789abcdef")
    }

    static func scored(_ families: [SpaceFamily]) throws -> ScoredSpaces {
        try ScoredSpaces(config: try LatencyTableTests.fmVitB.get(), families: families) { Importance.random($0, seed: 3) }
    }

    /// Solves `share` of the full model's latency on `families` (MLP the native one) with `table`.
    static func solve(share: Double, table: LoadedLatencyTable?, keepHeads: Double? = nil,
                      keepResidual: Double? = nil) throws -> (outcome: BudgetOutcome, goal: Double, timed: Int) {
        let config = try LatencyTableTests.fmVitB.get()
        var families: [SpaceFamily] = [.mlpHidden]
        if keepHeads != nil { families.append(.heads) }
        if keepResidual != nil { families.append(.residual) }
        let scored = try scored(families)
        let counting = CountingMeter()
        let goal = share * modelMilliseconds(config)
        var budget = Budget(keepHeads: keepHeads, keepResidual: keepResidual,
                            target: .latency(milliseconds: goal, batch: batch))
        budget.latencyTable = table
        let (plan, outcome) = try budget.solve(config: config, nativeFamilies: [.mlpHidden], latency: counting.meter,
                                               planFor: scored.plan)
        #expect(outcome.config == (try plan.prunedConfig(of: config)))
        #expect(outcome.measuredLatencyMilliseconds == modelMilliseconds(outcome.config))
        #expect(outcome.latencySolve?.measurements == counting.count)
        return (outcome, goal, counting.count)
    }

    @Test("a table right up to what it does not cover: one shape timed, on the target; without it, every shape",
          arguments: [0.6, 0.75, 0.9])
    func rightTableTimesOneShape(share: Double) throws {
        let table = try Self.macTable(try LatencyTableTests.fmVitB.get())
        let (outcome, goal, timed) = try Self.solve(share: share, table: table)
        let solve = try #require(outcome.latencySolve)
        #expect(timed == 1 && solve.tableRounds == 1 && solve.fallback == nil, "\(outcome.summary)")
        #expect(abs(solve.measuredMilliseconds - goal) <= LatencyMeter.tolerance * goal, "\(outcome.summary)")
        #expect(solve.tablePath == table.path && solve.tableHash == table.hash)
        // The prediction is the table's sum alone (nothing calibrated yet): under the measurement by the patch
        // embedding and head.
        let predicted = try #require(solve.predictedMilliseconds)
        #expect(predicted < solve.measuredMilliseconds && abs(predicted - goal) <= 0.001 * goal, "\(predicted)")
        #expect(outcome.summary.contains("solved from the table \(table.path) (\(table.hash)): predicted "))
        // The same target measured shape by shape: the bisection times a shape per halving.
        let (plain, _, plainTimed) = try Self.solve(share: share, table: nil)
        #expect(plainTimed >= 10 && plain.latencySolve?.tablePath == nil && plain.latencySolve?.tableRounds == 0)
    }

    @Test("attention the table does not cover (3-head blocks) is an offset: calibrated by the first measurement")
    func uncoveredAttentionIsCalibrated() throws {
        let table = try Self.macTable(try LatencyTableTests.fmVitB.get())
        let (outcome, goal, timed) = try Self.solve(share: 0.6, table: table, keepHeads: 0.75)
        let solve = try #require(outcome.latencySolve)
        #expect(outcome.config.blocks.contains { $0.heads < 4 }, "no block lost a head: nothing uncovered")
        #expect(timed == 2 && solve.tableRounds == 2 && solve.fallback == nil, "\(outcome.summary)")
        #expect(abs(solve.measuredMilliseconds - goal) <= LatencyMeter.tolerance * goal, "\(outcome.summary)")
    }

    @Test("a table off by a factor still lands on the target: the measurements recalibrate its slope",
          arguments: [3.0, 0.4])
    func tableOffByAFactor(factor: Double) throws {
        let table = try Self.macTable(try LatencyTableTests.fmVitB.get(), factor: factor)
        let (outcome, goal, timed) = try Self.solve(share: 0.6, table: table)
        let solve = try #require(outcome.latencySolve)
        #expect(abs(solve.measuredMilliseconds - goal) <= LatencyMeter.tolerance * goal, "\(outcome.summary)")
        #expect(solve.fallback == nil && timed >= 2 && timed <= Budget.tableSolves, "\(outcome.summary)")
    }

    @Test("a table that cannot tell widths apart, or one for another residual width, falls back to measuring")
    func uselessTableFallsBack() throws {
        let config = try LatencyTableTests.fmVitB.get()
        var flat = try Self.macTable(config)
        let right = flat.table
        flat.table = LayerLatencyTable(device: right.device, batch: right.batch, parent: right.parent,
                                       widths: right.widths, rounds: 1,
                                       linear: right.linear.map { .init($0.key, milliseconds: 1) },
                                       attention: right.attention.map { .init($0.key, milliseconds: 1) })
        let (outcome, goal, timed) = try Self.solve(share: 0.6, table: flat)
        let solve = try #require(outcome.latencySolve)
        #expect(solve.fallback != nil && timed > Budget.tableSolves, "\(outcome.summary)")
        #expect(abs(solve.measuredMilliseconds - goal) <= 0.1 * goal, "\(outcome.summary)")
        #expect(outcome.summary.contains("missed") && outcome.summary.contains("solved by measuring"))

        let (narrow, narrowGoal, _) = try Self.solve(share: 0.6, table: try Self.macTable(config), keepResidual: 0.9)
        let reason = try #require(narrow.latencySolve?.fallback)
        #expect(reason.contains("residual width 128") && narrow.latencySolve?.tableRounds == 0, "\(reason)")
        #expect(abs(narrow.measuredLatencyMilliseconds! - narrowGoal) <= 0.1 * narrowGoal, "\(narrow.summary)")
    }

    @Test("a target under the smallest cut: the table's smallest shape timed over it, the measured bisection refuses")
    func outOfReachFromTheTable() throws {
        let config = try LatencyTableTests.fmVitB.get()
        let counting = CountingMeter()
        var budget = Budget(target: .latency(milliseconds: 0.01 * Self.modelMilliseconds(config), batch: Self.batch))
        budget.latencyTable = try Self.macTable(config)
        let error = try #require(throws: PruneError.self) {
            try budget.solve(config: config, nativeFamilies: [.mlpHidden], latency: counting.meter,
                             planFor: try Self.scored([.mlpHidden]).plan)
        }
        #expect("\(error)".contains("out of reach") && "\(error)".contains("the smallest model this method cuts takes"))
        // The table's solve times the smallest cut once; the bisection then times its own shapes (nearly all of
        // them new: it halves towards ratio 0, the table went straight there).
        #expect(counting.count > Budget.tableSolves, "timed \(counting.count) shapes")
    }

    @Test("a target over the largest shape the budget allows: that shape, timed once")
    func targetOverTheLargestShape() throws {
        let config = try LatencyTableTests.fmVitB.get()
        let (outcome, _, timed) = try Self.solve(share: 1.3, table: try Self.macTable(config))
        #expect(timed == 1 && outcome.latencySolve?.fallback == nil && outcome.config == config, "\(outcome.summary)")
    }

    @Test("a table for another batch, or without a latency target, is refused in one line naming it")
    func mismatchedTableRefused() throws {
        let table = try Self.macTable(try LatencyTableTests.fmVitB.get(), batch: 2)
        var budget = Budget(target: .latency(milliseconds: 5, batch: 64))
        budget.latencyTable = table
        let batch = try #require(throws: LatencyTableError.self) { try budget.validate() }
        #expect(batch.description.hasPrefix("--latency-table \(table.path): measured at batch 2, the target is at "
                                            + "--latency-batch 64") && !batch.description.contains("\n"),
                "\(batch)")
        budget.target = .macs(0.5)
        let noTarget = try #require(throws: LatencyTableError.self) { try budget.validate() }
        #expect(noTarget.description == "--latency-table \(table.path): solves a --target-latency only")
        budget.target = .latency(milliseconds: 5, batch: 2)
        try budget.validate()
    }
}
