extension Dataset {
    /// The same images with each label `l` replaced by `newLabels[l]` and the classes named `classNames` (indexed
    /// by the new labels): a folder's classes moved to the places a model's outputs give them.
    public func relabeled(_ newLabels: [Int], classNames: [String]) throws -> Dataset {
        guard newLabels.count == classCount, newLabels.allSatisfy({ $0 >= 0 && $0 < classNames.count }) else {
            throw DataFileError(file: name, .invalidRequest(
                "cannot move \(classCount) classes to \(classNames.count) model classes"))
        }
        return try Dataset(store: store, members: members, labels: labels.map { Int32(newLabels[Int($0)]) },
                           classNames: classNames, preparation: preparation, name: name)
    }
}

extension DatasetSplits {
    /// Every split relabelled alike (see `Dataset.relabeled`).
    public func relabeled(_ newLabels: [Int], classNames: [String]) throws -> DatasetSplits {
        DatasetSplits(training: try training.relabeled(newLabels, classNames: classNames),
                      validation: try validation?.relabeled(newLabels, classNames: classNames),
                      test: try test?.relabeled(newLabels, classNames: classNames))
    }
}
