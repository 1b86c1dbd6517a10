import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

extension Trainer {
    // MARK: Shape changes

    /// Continues training on `weights`, a physically smaller copy of the current model (a hook pruning mid-run):
    /// element `i` of parameter `name` in `weights` was element `elementSources[name][i]` of the current model, and
    /// the optimizer's moments and masks are sliced the same way, so training continues as if the smaller model had
    /// been trained from the start with exactly these weights and moments. Parameters not in `elementSources` must
    /// keep their shape. Call between steps (from a hook).
    public func replaceModel(with weights: ViTWeights, elementSources: [String: [Int]]) throws {
        let new = weights.config, current = model.config
        guard new.classes == current.classes, new.imageSize == current.imageSize,
              new.inChannels == current.inChannels else {
            throw TrainingError.invalidState("a replacement model must keep classes, image size and channels")
        }
        let replacement = try VisionTransformer(weights: weights, backend: backend)
        try optimizer.reattach(replacement, elementSources: elementSources)
        model = replacement
    }

    /// The top-level settings that differ, `name checkpoint→run`, for one error line.
    static func differences(_ a: TrainingSettings, _ b: TrainingSettings) -> String {
        func fields(_ settings: TrainingSettings) -> [String: String] {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard let data = try? encoder.encode(settings),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
            return object.mapValues { "\($0)" }
        }
        let (left, right) = (fields(a), fields(b))
        return Set(left.keys).union(right.keys).sorted().compactMap { key in
            left[key] == right[key] ? nil : "\(key) \(left[key] ?? "none") → \(right[key] ?? "none")"
        }.joined(separator: ", ")
    }
}
