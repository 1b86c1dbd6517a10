import ViTForgeDevice
import ViTForgeTrain

/// How the search's ℓ1 weights move over its steps (issue 28, part 4). The paper's constant weights separate the
/// masks over 300 epochs; in the 1–3 epochs we can afford, Adam moves a mask by about its learning rate per step
/// whatever the penalty, and a small penalty against the task gradient's noise moves it less: the entries the cut
/// removes stay far from 0, so the cut loses what the searched model had. Both schedules add, on top of the
/// constant weights, an extra weight `peak·ramp(step)` that grows linearly from 0 to `peak` over the first
/// `rampFraction` of the search (the masks first order themselves under the task loss, then the push firms up):
/// `ramp` gives it to every entry; `budget` only to the entries the run's own budget would remove if the search
/// stopped now (the cut's rule on the current values: one threshold per module type, a target solved on them), so the
/// removed entries are driven to ≈ 0 while the kept ones keep their values. `budget` makes the search serve its own
/// budget: `--from-search` at another budget cuts masks pushed for this one.
public enum SlimPenaltySchedule: String, CaseIterable, Sendable {
    /// The paper's: the ℓ1 weights on every entry at every step.
    case constant
    /// Every entry's weight grows by `peak·ramp(step)`.
    case ramp
    /// Only the entries the budget removes at the current values get the extra `peak·ramp(step)`.
    case budget

    /// `min(1, (step + 1) / ⌊rampFraction·totalSteps⌋)` (0-based `step`; at least one step of ramp): the extra
    /// weight's share of its peak at that step. A function of the step alone, so a resumed search computes it again.
    public static func ramp(step: Int, totalSteps: Int, rampFraction: Double) -> Double {
        let rampSteps = max(1, Int(rampFraction * Double(totalSteps)))
        return min(1, Double(step + 1) / Double(rampSteps))
    }
}

/// The extra weight per entry of the `budget` schedule at one step, on the host: `extra` on the entries outside the
/// kept sets, 0 on the kept. Its gradient `extra·sign(z)` goes onto the device through one scratch buffer per
/// learned value buffer; the kept sets are held fixed within the step (a subgradient of a piecewise-linear term).
struct RemovedEntryPenalty {
    /// Per block: which attention and MLP entries the budget keeps at the current values.
    typealias KeptSets = (attention: [[Bool]], mlp: [[Bool]])

    /// `Σ extra·|z|` over the removed entries, and `extra·sign(z)` (0 where kept or z = 0) added to `gradient`.
    static func add(values: [Float], kept: [Bool], extra: Double, gradient: Buffer, scratch: Buffer,
                    backend: Backend) throws -> Double {
        var value = 0.0
        var push = [Float](repeating: 0, count: values.count)
        for (i, z) in values.enumerated() where !kept[i] {
            value += extra * Double(abs(z))
            push[i] = z > 0 ? Float(extra) : z < 0 ? -Float(extra) : 0
        }
        try backend.write(push, to: scratch)
        try backend.add(gradient, scratch, out: gradient, count: values.count)
        return value
    }
}
