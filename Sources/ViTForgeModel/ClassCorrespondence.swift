import ViTForgeFormats
/// How a data set's classes, by name, meet a model's classes.
public enum ClassCorrespondence: Equatable, Sendable {
    /// The data's class `i` is the model's class `modelClasses[i]` (a data-set class id, `ViTConfig.classId`):
    /// every data class is one the model knows.
    case known(modelClasses: [Int])
    /// These data classes are none of the model's (in the data's order).
    case unknown([String])
    /// The model carries no class names (a plain timm file), so names cannot be compared.
    case unnamed
}

extension ViTConfig {
    /// Matches `dataClasses` (a data set's class names, by label) to this model's `classNames`: exactly, else
    /// ignoring case when that picks one class (a folder `sneaker` is HF's `Sneaker`).
    public func correspondence(ofDataClasses dataClasses: [String]) -> ClassCorrespondence {
        guard let classNames else { return .unnamed }
        var found: [Int] = [], missing: [String] = []
        for name in dataClasses {
            var output = classNames.firstIndex(of: name)
            if output == nil {
                let folded = classNames.indices.filter { classNames[$0].lowercased() == name.lowercased() }
                if folded.count == 1 { output = folded[0] }
            }
            if let output { found.append(classId(ofOutput: output)) } else { missing.append(name) }
        }
        return missing.isEmpty ? .known(modelClasses: found) : .unknown(missing)
    }

    /// One past the largest data-set class id an output predicts: the label space the model is scored in.
    public var classIdCount: Int { (classIds?.max() ?? classes - 1) + 1 }

    /// The name of each data-set class id below `classIdCount`: the model's name where an output predicts it,
    /// else the id's number.
    public var namesByClassId: [String] {
        var names = (0 ..< classIdCount).map(String.init)
        for output in 0 ..< classes {
            if let classNames { names[classId(ofOutput: output)] = classNames[output] }
        }
        return names
    }
}
