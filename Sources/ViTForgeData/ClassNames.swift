extension DataSource {
    /// The class names of a data set without loading its images (for `--classes` given by name): Fashion-MNIST's
    /// ten, an ImageFolder's class folders (of `train` when it has splits); nil for a plain IDX folder, whose
    /// classes have numbers only.
    public static func classNames(_ argument: String) throws -> [String]? {
        switch try resolve(argument) {
        case .fashionMNIST: return IDXDataset.fashionMNISTClassNames
        case .idxFolder: return nil
        case let .imageFolderSplits(folder): return try ImageFolder.classNames(in: ImageFolder.join(folder, "train"))
        case let .imageFolder(folder): return try ImageFolder.classNames(in: folder)
        }
    }
}
