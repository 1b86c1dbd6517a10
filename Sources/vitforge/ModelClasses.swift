import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// A data set's classes placed among a model's: what every command that reads data does before it scores or
/// trains, so that a folder's `sneaker` is the model's `sneaker` whatever the folders' sorted order.
struct ClassFit {
    /// Data label → the model's class id; nil when the labels already are (same names in the same order, or a
    /// model without names).
    var modelClasses: [Int]?
    /// The model's class names by id, for the relabelled data.
    var names: [String]
    /// One line saying the data is a subset of the model's classes; nil when it is not.
    var note: String?
    /// One line when the data's classes cannot be matched to the model's by name and are fewer than its outputs
    /// (a plain timm ImageNet file on a 10-class folder): label k is scored as output k, which is right only for a
    /// head trained on these classes in this order; nil otherwise.
    var warning: String?

    /// Checks `dataset`'s classes against `config`'s names (`model` names the model in messages). A class the
    /// model does not know is an error naming its folder; without names on the model, the data may not have
    /// more classes than the model scores. `data` names the data set: a plain IDX folder's classes are numbers,
    /// which name nothing to compare.
    init(_ dataset: Dataset, data: String, model: String, config: ViTConfig) throws {
        names = config.namesByClassId
        // Only the classes with images count: a --classes subset, or a val folder missing a class, is checked
        // for what it holds.
        let present = Set(dataset.labels.map(Int.init)).sorted()
        let presentNames = present.map { dataset.classNames[$0] }
        let named = try DataSource.classNames(data) != nil
        switch named ? config.correspondence(ofDataClasses: presentNames) : .unnamed {
        case .unnamed:
            // A trimmed head (classIds) names the data set's classes it predicts; otherwise output k is class k.
            if config.classIds == nil && dataset.classCount > config.classes {
                throw DataFileError(file: dataset.name, .invalidRequest(
                    "\(dataset.classCount) classes, but the model \(model) has \(config.classes) outputs"))
            }
            if config.classIds == nil && dataset.classCount < config.classes {
                let why = config.classNames == nil ? "the model names no classes" : "the data's classes have no names"
                warning = "\(dataset.name)'s \(dataset.classCount) classes cannot be matched to the \(config.classes) "
                    + "outputs of \(model) by name (\(why)): "
                    + "label k is scored as output k, which is right only if its head was trained on these classes in "
                    + "this order (`vitforge train --init \(model) --data \(data)` fine-tunes a new "
                    + "\(dataset.classCount)-way head)"
            }
        case let .unknown(missing):
            throw DataFileError(file: ImageFolder.join(dataset.name, missing[0]), .invalidRequest(
                "class \"\(missing[0])\" is not one of the model \(model)'s classes "
                + "(\(Self.list(config.classNames ?? []))); --classes picks the folder's classes to use"))
        case let .known(ids):
            var map = [Int](repeating: 0, count: dataset.classCount)  // absent classes: no image carries them
            for (label, id) in zip(present, ids) { map[label] = id }
            if map != Array(0 ..< names.count) { modelClasses = map }
            if ids.count < config.classes {
                note = "\(dataset.name) has \(ids.count) of the model's \(config.classes) classes "
                    + "(\(Self.list(presentNames))): scored as that subset, predictions over all \(config.classes)"
            }
        }
    }

    /// Prints the note (standard output) and the warning (standard error), where there are any.
    func announce() {
        if let note { print(note) }
        if let warning { DeviceSelection.printWarning(warning) }
    }

    /// `dataset` with the model's class ids as labels.
    func apply(_ dataset: Dataset) throws -> Dataset {
        guard let modelClasses else { return dataset }
        return try dataset.relabeled(modelClasses, classNames: names)
    }

    func apply(_ splits: DatasetSplits) throws -> DatasetSplits {
        guard let modelClasses else { return splits }
        return try splits.relabeled(modelClasses, classNames: names)
    }

    /// Data-set class indices (`--classes`) as the model's class ids.
    func apply(_ classes: [Int]?) -> [Int]? {
        guard let modelClasses, let classes else { return classes }
        return classes.map { modelClasses.indices.contains($0) ? modelClasses[$0] : $0 }
    }

    /// `a, b, c`, shortened after twelve names (an ImageNet head has a thousand).
    static func list(_ names: [String]) -> String {
        names.count <= 12 ? names.joined(separator: ", ")
            : names.prefix(10).joined(separator: ", ") + ", … (\(names.count) in all)"
    }
}
