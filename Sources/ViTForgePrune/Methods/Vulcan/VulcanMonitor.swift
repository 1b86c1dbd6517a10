import Foundation
import ViTForgeData
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

extension ViTWeights {
    /// Weights kept in a hook's checkpoint state: the config JSON under `config` in `json`, tensors by name.
    static func fromHookTensors(_ state: HookState) throws -> ViTWeights {
        let config = try ViTConfig.fromJSON(state.json, file: "vulcan checkpoint state")
        var tensors: [String: HostTensor] = [:]
        for spec in config.parameterSpecs() {
            guard let values = state.tensors[spec.name] else {
                throw PruneError.planMismatch("vulcan checkpoint state: no \(spec.name)")
            }
            tensors[spec.name] = HostTensor(shape: spec.shape, values: values)
        }
        return try ViTWeights(config: config, tensors: tensors)
    }

    func hookState() -> HookState {
        HookState(json: config.jsonString(), tensors: tensors.mapValues(\.values))
    }
}

/// After every step: records the constraint values and multipliers every `evalEvery` steps, evaluates the
/// would-be pruned model on the validation split and keeps the best, and flags convergence (both constraints
/// below ε). Its state — clusters and anchors, the records, the best pruned model — is checkpointed.
final class VulcanMonitor: TrainingHook {
    let name = "vulcan"
    let penalty: VulcanPenalty
    private(set) var clusters: [[VulcanSurgery.Cluster]]
    let widths: [VulcanBudget.BlockWidths]
    let trimHead: [Int]?
    let classes: [Int]
    let validation: Dataset?
    let evalEvery: Int
    let epsilon: Double
    let batchSize: Int
    private(set) var converged = false

    struct Record: Codable, Equatable {
        var step: Int
        var constraints: VulcanConstraintValues
        var lambda1: Double, lambda2: Double
        var validationAccuracy: Double?
    }

    struct State: Codable {
        var clusters: [[VulcanSurgery.Cluster]]
        var records: [Record]
        var bestStep: Int?
        var bestAccuracy: Double?
        var converged: Bool
    }

    private(set) var records: [Record] = []
    private(set) var bestStep: Int?
    private var bestAccuracy: Double?
    /// The best pruned model so far, as hook state (config JSON + tensors).
    private(set) var best: HookState?

    init(penalty: VulcanPenalty, clusters: [[VulcanSurgery.Cluster]], widths: [VulcanBudget.BlockWidths],
         trimHead: [Int]?, classes: [Int], validation: Dataset?, evalEvery: Int, epsilon: Double, batchSize: Int) {
        self.penalty = penalty
        self.clusters = clusters
        self.widths = widths
        self.trimHead = trimHead
        self.classes = classes
        self.validation = validation
        self.evalEvery = evalEvery
        self.epsilon = epsilon
        self.batchSize = batchSize
    }

    func afterStep(_ trainer: Trainer) throws {
        let constraints = penalty.last
        converged = constraints.collapseL1 < epsilon && constraints.tailL1 < epsilon
        let step = trainer.state.step
        let due = evalEvery > 0 ? step % evalEvery == 0 : step % 50 == 0
        guard due || converged || step == trainer.totalSteps else { return }
        let (lambda1, lambda2) = try penalty.multipliers.read()
        var record = Record(step: step, constraints: constraints, lambda1: lambda1, lambda2: lambda2)
        if evalEvery > 0, let validation {
            let pruned = try VulcanSurgery.apply(try trainer.model.hostWeights(), clusters: clusters, widths: widths,
                                                 trimHead: trimHead)
            let accuracy = try Vulcan.subsetAccuracy(pruned, on: validation, classes: classes,
                                                     backend: trainer.model.backend, batchSize: batchSize).accuracy
            record.validationAccuracy = accuracy
            if accuracy > (bestAccuracy ?? -.infinity) {
                bestAccuracy = accuracy
                bestStep = step
                best = pruned.hookState()
            }
        }
        records.append(record)
    }

    /// Per-record series for the report.
    var series: [String: [Double]] {
        var series = [
            "step": records.map { Double($0.step) },
            "ccnc_l1": records.map(\.constraints.collapseL1), "ccnc_l2": records.map(\.constraints.collapseL2),
            "tnnr_l1": records.map(\.constraints.tailL1), "tnnr_l2": records.map(\.constraints.tailL2),
            "lambda1": records.map(\.lambda1), "lambda2": records.map(\.lambda2),
        ]
        // Only with --eval-every (JSON has no NaN for the records without one).
        let accuracies = records.compactMap(\.validationAccuracy)
        if accuracies.count == records.count { series["validation_accuracy_pruned"] = accuracies }
        return series
    }

    func checkpointState() throws -> HookState {
        let state = State(clusters: clusters, records: records, bestStep: bestStep, bestAccuracy: bestAccuracy,
                          converged: converged)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var tensors: [String: [Float]] = [:]
        var bestConfig = ""
        if let best {
            for (key, values) in best.tensors { tensors["best." + key] = values }
            bestConfig = best.json
        }
        let json = String(decoding: try encoder.encode(state), as: UTF8.self)
        // The best model's config rides in a tensor-free key of the JSON object: {"state": ..., "best": ...}.
        let wrapper = ["state": json, "best": bestConfig]
        return HookState(json: String(decoding: try encoder.encode(wrapper), as: UTF8.self), tensors: tensors)
    }

    func restore(_ state: HookState, trainer: Trainer) throws {
        let wrapper = try JSONDecoder().decode([String: String].self, from: Data(state.json.utf8))
        let saved = try JSONDecoder().decode(State.self, from: Data((wrapper["state"] ?? "").utf8))
        clusters = saved.clusters
        records = saved.records
        bestStep = saved.bestStep
        bestAccuracy = saved.bestAccuracy
        converged = saved.converged
        if let config = wrapper["best"], !config.isEmpty {
            var tensors: [String: [Float]] = [:]
            for (key, values) in state.tensors where key.hasPrefix("best.") { tensors[String(key.dropFirst(5))] = values }
            best = HookState(json: config, tensors: tensors)
        } else {
            best = nil
        }
        try penalty.setClusters(clusters, config: trainer.model.config, backend: trainer.model.backend)
    }
}
