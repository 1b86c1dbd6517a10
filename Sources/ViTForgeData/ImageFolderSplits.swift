/// The stores of an ImageFolder run: `train` (or the folder itself) and, when present, `val` and `test`, listed
/// with one shared log; empty class folders named; optionally decoded into memory (`--cache-images`).
struct ImageFolderSplits {
    var training: ImageStore
    var validation: ImageStore?
    var test: ImageStore?
    let log: ImageFolderLog

    /// `training` is the training folder; `others` the `val` and `test` folders that exist (named by split).
    /// `trainingScaling` is how training decodes, which is what a cache of the training folder holds.
    init(training trainingFolder: String, validation validationFolder: String?, test testFolder: String?,
         trainingScaling: DecodeScaling, options: DatasetOptions) throws {
        let log = ImageFolderLog(policy: options.onCorrupt, warn: options.warn)
        let training = try ImageFolder.list(trainingFolder, log: log)
        let classNames = training.classNames
        validation = try validationFolder.map { try ImageFolder.list($0, classNames: classNames, log: log) }
        test = try testFolder.map { try ImageFolder.list($0, classNames: classNames, log: log) }
        self.log = log
        self.training = training
        if options.cacheImages { try cache(trainingScaling: trainingScaling, budget: options.cacheBudget) }
        try checkEmptyClasses(kept: options.classes)
    }

    /// Decodes every split into memory when all of them fit in `budget` bytes (training at `trainingScaling`, the
    /// others at full size, as they are used); otherwise says so and leaves them streaming.
    private mutating func cache(trainingScaling: DecodeScaling, budget: Int) throws {
        let needed = training.decodedBytes(scaling: trainingScaling) + (validation?.decodedBytes(scaling: .full) ?? 0)
            + (test?.decodedBytes(scaling: .full) ?? 0)
        let megabytes = { (bytes: Int) in ImageFolderLog.grouped((bytes + (1 << 20) - 1) >> 20) + " MB" }
        guard needed <= budget else {
            log.note("note: --cache-images: the decoded images need \(megabytes(needed)), more than the "
                     + "\(megabytes(budget)) allowed (a quarter of this machine's memory); decoding them from the files "
                     + "for every batch instead")
            return
        }
        training = try training.cachingDecoded(scaling: trainingScaling)
        validation = try validation?.cachingDecoded(scaling: .full)
        test = try test?.cachingDecoded(scaling: .full)
        log.note("note: --cache-images: \(megabytes(needed)) of decoded images kept in memory")
    }

    /// A class folder without images is an error when training would have none of that class (among the `kept`
    /// classes), a warning when it is the `val` or `test` folder that is empty.
    private func checkEmptyClasses(kept: [Int]?) throws {
        let needed = { (label: Int) in kept?.contains(label) ?? true }
        if let label = training.emptyClasses.first(where: needed) {
            throw DataFileError(file: ImageFolder.join(training.origin, training.classNames[label]), .invalidRequest(
                "class folder holds no readable PNG or JPEG file: class \(label) would have no images to train on"))
        }
        for store in [validation, test].compactMap({ $0 }) {
            for label in store.emptyClasses where needed(label) {
                log.note("warning: \(ImageFolder.join(store.origin, store.classNames[label])): class folder holds no "
                         + "readable PNG or JPEG file (\(training.origin) has images of the class)")
            }
        }
    }
}
