import Dispatch
import Foundation
import ViTForgeResampling

/// A labelled image set as a model sees it: `count` images, each prepared on demand (resized, channels converted,
/// normalised, optionally augmented) into `elementsPerImage` floats, with its class label. A view on shared
/// storage: subsets and splits copy indices, never pixels.
public struct Dataset: Sendable {
    /// The decoded images this view selects from.
    public let store: ImageStore
    /// [count]: which stored image each position shows, in stored order.
    public let members: [Int]
    /// [count]: each position's label as training sees it (remapped to 0..<k after a remapping subset).
    public let labels: [Int32]
    /// Names by label: all the store's classes, or the subset's when its labels were remapped.
    public let classNames: [String]
    public let preparation: ImagePreparation
    /// For messages: `fashion-mnist train`, `photos/val`, ...
    public let name: String
    /// The size a folder's JPEGs are decoded at: `.reduced` for training (DCT scaling), `.full` for evaluation.
    public var decodeScaling: DecodeScaling = .full

    /// Every stored image, with the store's labels.
    public init(store: ImageStore, preparation: ImagePreparation, name: String) throws {
        try self.init(store: store, members: Array(0..<store.count), labels: store.labels,
                      classNames: store.classNames, preparation: preparation, name: name)
    }

    init(store: ImageStore, members: [Int], labels: [Int32], classNames: [String], preparation: ImagePreparation,
         name: String) throws {
        if let index = members.first(where: { !preparation.accepts(sourceChannels: store.shapes[$0].channels) }) {
            throw DataFileError(file: store.name(of: index), .invalidRequest(
                "a \(store.shapes[index].channels)-channel image cannot feed a \(preparation.channels)-channel model"))
        }
        self.store = store
        self.members = members
        self.labels = labels
        self.classNames = classNames
        self.preparation = preparation
        self.name = name
    }

    public var count: Int { members.count }
    /// Number of classes the labels index (a model's head size for this data).
    public var classCount: Int { classNames.count }
    public var elementsPerImage: Int { preparation.elementsPerImage }

    public func label(_ position: Int) -> Int { Int(labels[position]) }

    /// Image `position` prepared for the model: [channels, side, side].
    public func image(_ position: Int, augmentation: ImageAugmentation = .identity) throws -> [Float] {
        try [Float](unsafeUninitializedCapacity: elementsPerImage) { buffer, initialised in
            if let base = buffer.baseAddress { try writeImage(position, augmentation: augmentation, into: base) }
            initialised = elementsPerImage
        }
    }

    /// Writes image `position` to `output` [channels, side, side] and returns its label. A streamed file that
    /// fails to decode now (its header read fine when listed) is, under `.skip`, warned about once and replaced by
    /// the next position of this data set that decodes, with that image's label: the same replacement on every
    /// thread, run and resume, and the batch keeps its size. Under `.fail` its error is thrown.
    @discardableResult
    public func writeImage(_ position: Int, augmentation: ImageAugmentation,
                           into output: UnsafeMutablePointer<Float>) throws -> Int32 {
        var candidate = position
        for _ in 0..<count {
            let member = members[candidate]
            if let log = store.log, log.hasSkipped(store.name(of: member)) {
                candidate = (candidate + 1) % count
                continue
            }
            do {
                try store.withImage(member, scaling: decodeScaling) {
                    preparation.prepare($0, augmentation: augmentation, into: output)
                }
                return labels[candidate]
            } catch let error as DataFileError {
                guard let log = store.log else { throw error }
                try log.skip(error)
                candidate = (candidate + 1) % count
            }
        }
        throw DataFileError(file: name, .invalidRequest("none of the \(count) images decodes"))
    }

    /// Writes images `positions`, unaugmented, to `output` [positions.count, channels, side, side] (evaluation).
    /// Files are decoded on every core; the result does not depend on the timing.
    public func prepare(_ positions: some Collection<Int>, into output: UnsafeMutableBufferPointer<Float>) throws {
        precondition(output.count >= positions.count * elementsPerImage, "output too small for the batch")
        guard let base = output.baseAddress else { return }
        let list = Array(positions)
        let workers = store.streams ? min(list.count, ProcessInfo.processInfo.activeProcessorCount) : 1
        try Self.parallel(slots: list.count, workers: workers) { slot in
            try writeImage(list[slot], augmentation: .identity, into: base + slot * elementsPerImage)
        }
    }

    /// Runs `body` for slots 0..<slots, slot `s` on worker `s % workers`; throws the error of the lowest failing
    /// slot, so which error surfaces does not depend on the timing.
    static func parallel(slots: Int, workers: Int, _ body: (Int) throws -> Void) throws {
        guard workers > 1 else {
            for slot in 0..<slots { try body(slot) }
            return
        }
        let lock = NSLock()
        var failure: (slot: Int, error: Error)?
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for slot in stride(from: worker, to: slots, by: workers) {
                do { try body(slot) } catch {
                    lock.withLock { if failure == nil || slot < failure!.slot { failure = (slot, error) } }
                    return
                }
            }
        }
        if let failure { throw failure.error }
    }

    /// The file (or data set and index) image `position` came from, for messages.
    public func source(of position: Int) -> String { store.name(of: members[position]) }

    /// The images whose class is in `classes` (indices into `classNames`), in stored order. With `remap`, labels
    /// become positions in `classes` as given (`5,7,9` → 0, 1, 2) and `classNames` shrinks to theirs, for a
    /// model with a k-class head; without, labels and class names stay as they are (a model with all classes).
    /// A class index outside the data set or without images here is an error.
    public func subset(classes: [Int], remap: Bool) throws -> Dataset {
        guard !classes.isEmpty else { throw DataFileError(file: name, .invalidRequest("--classes: an empty class list")) }
        guard Set(classes).count == classes.count else {
            throw DataFileError(file: name, .invalidRequest("--classes lists a class twice"))
        }
        var newLabel = [Int32](repeating: -1, count: classCount)
        for (position, label) in classes.enumerated() {
            guard label >= 0 && label < classCount else {
                throw DataFileError(file: name, .invalidRequest(
                    "--classes: class \(label) does not exist (the data has classes 0...\(classCount - 1))"))
            }
            newLabel[label] = Int32(remap ? position : label)
        }
        var positions: [Int] = []
        var present = Set<Int32>()
        for position in 0..<count where newLabel[Int(labels[position])] >= 0 {
            positions.append(position)
            present.insert(labels[position])
        }
        if let missing = classes.first(where: { !present.contains(Int32($0)) }) {
            throw DataFileError(file: name, .invalidRequest("--classes: no images of class \(missing) (\(classNames[missing]))"))
        }
        var subset = try Dataset(store: store, members: positions.map { members[$0] },
                                 labels: positions.map { newLabel[Int(labels[$0])] },
                                 classNames: remap ? classes.map { classNames[$0] } : classNames,
                                 preparation: preparation, name: name)
        subset.decodeScaling = decodeScaling
        return subset
    }

    /// Carves a held-out validation set from this (training) set, stratified: in every class, a seeded shuffle of
    /// its images picks round(fraction · class size) of them for validation (at least one image stays in
    /// training). Both parts keep stored order; the split depends only on (seed, fraction, the labels).
    public func splitValidation(fraction: Double, seed: UInt64) throws -> (training: Dataset, validation: Dataset) {
        guard fraction > 0 && fraction < 1 else {
            throw DataFileError(file: name, .invalidRequest("validation fraction \(fraction) is not between 0 and 1"))
        }
        var byClass: [Int32: [Int]] = [:]
        for position in 0..<count { byClass[labels[position], default: []].append(position) }
        var isValidation = [Bool](repeating: false, count: count)
        for label in byClass.keys.sorted() {
            guard let positions = byClass[label] else { continue }
            let taken = min(positions.count - 1, Int((Double(positions.count) * fraction).rounded()))
            guard taken > 0 else { continue }
            var random = DataRandom(seed: seed, purpose: .validationSplit, Int(label), 0)
            for slot in random.permutation(positions.count).prefix(taken) { isValidation[positions[slot]] = true }
        }
        let validation = (0..<count).filter { isValidation[$0] }
        guard !validation.isEmpty else {
            throw DataFileError(file: name, .invalidRequest(
                "validation fraction \(fraction) of \(count) images leaves no validation image"))
        }
        let training = (0..<count).filter { !isValidation[$0] }
        return (try view(training, name: name), try view(validation, name: name + " (validation)"))
    }

    private func view(_ positions: [Int], name: String) throws -> Dataset {
        var view = try Dataset(store: store, members: positions.map { members[$0] }, labels: positions.map { labels[$0] },
                               classNames: classNames, preparation: preparation, name: name)
        view.decodeScaling = decodeScaling
        return view
    }
}

/// The parts of a data set a run uses. `validation` is carved from training (or an ImageFolder's `val` folder),
/// never taken from `test`.
public struct DatasetSplits: Sendable {
    public var training: Dataset
    public var validation: Dataset?
    public var test: Dataset?
    /// What reading an ImageFolder's files left out (nil for IDX data).
    public var log: ImageFolderLog?

    public init(training: Dataset, validation: Dataset? = nil, test: Dataset? = nil, log: ImageFolderLog? = nil) {
        self.training = training
        self.validation = validation
        self.test = test
        self.log = log
    }

    /// "skipped 3 of 12,408 image files; first: …" after a run, or nil when no file was skipped.
    public var skippedSummary: String? { log?.summary }
}

/// How to load a data set for a model.
public struct DatasetOptions: Sendable {
    /// The model's input channels and image side.
    public var channels: Int
    public var side: Int
    /// Per-channel (or one for all channels) normalisation; nil takes the data set's default (Fashion-MNIST's
    /// statistics for IDX data, ImageNet's for ImageFolders).
    public var means: [Double]?
    public var stds: [Double]?
    /// Resize filter and timm `crop_pct` of the evaluation transform; nil takes the data set's default (bicubic;
    /// crop 1 for IDX data, 0.875 for ImageFolders, timm's DeiT/ImageNet recipe).
    public var filter: ResamplingFilter?
    public var cropPct: Double?
    /// Keep only these classes (`--classes 5,7,9`), and whether to renumber them 0..<k.
    public var classes: [Int]?
    public var remapLabels: Bool
    /// Share of each training class held out for validation (0: none, or an ImageFolder's `val` folder).
    public var validationFraction: Double
    /// Seed of the validation split.
    public var seed: UInt64
    /// An image file that does not decode: skipped with a warning (the default; counted in `skippedSummary`) or
    /// the end of the run (`--strict-data`).
    public var onCorrupt: CorruptImagePolicy
    /// Keep a folder's decoded images in memory (`--cache-images`) when they fit in `cacheBudget` bytes; otherwise
    /// (and by default) they are decoded from their files for every batch.
    public var cacheImages: Bool
    public var cacheBudget: Int
    /// Decode training JPEGs with DCT scaling (`DecodeScaling.reduced`); evaluation always decodes at full size.
    public var reducedTrainingDecode: Bool
    /// Receives one line per skipped image and per note.
    public var warn: @Sendable (String) -> Void

    public init(channels: Int, side: Int, means: [Double]? = nil, stds: [Double]? = nil,
                filter: ResamplingFilter? = nil, cropPct: Double? = nil, classes: [Int]? = nil,
                remapLabels: Bool = false, validationFraction: Double = 0, seed: UInt64 = 0,
                onCorrupt: CorruptImagePolicy = .skip, cacheImages: Bool = false,
                cacheBudget: Int = DatasetOptions.defaultCacheBudget, reducedTrainingDecode: Bool = true,
                warn: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.channels = channels
        self.side = side
        self.means = means
        self.stds = stds
        self.filter = filter
        self.cropPct = cropPct
        self.classes = classes
        self.remapLabels = remapLabels
        self.validationFraction = validationFraction
        self.seed = seed
        self.onCorrupt = onCorrupt
        self.cacheImages = cacheImages
        self.cacheBudget = cacheBudget
        self.reducedTrainingDecode = reducedTrainingDecode
        self.warn = warn
    }

    /// A quarter of the machine's memory: what `--cache-images` may fill, leaving the rest to the model, the
    /// optimizer and the other processes.
    public static var defaultCacheBudget: Int { Int(clamping: ProcessInfo.processInfo.physicalMemory / 4) }
}

/// What a `--data` argument names.
public enum DataSource: Equatable, Sendable {
    /// `fashion-mnist`: the Debian package's IDX files.
    case fashionMNIST
    /// A folder of `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
    case idxFolder(String)
    /// An ImageFolder with `train` (and optionally `val`, `test`) sub-folders, each one folder per class.
    case imageFolderSplits(String)
    /// A single ImageFolder (one folder per class): training data only.
    case imageFolder(String)

    /// `fashion-mnist`, or a folder: IDX when it holds `train-images-idx3-ubyte[.gz]` or `t10k-...`, an ImageFolder
    /// with splits when it has a `train` sub-folder, otherwise a single ImageFolder.
    public static func resolve(_ argument: String) throws -> DataSource {
        if argument == IDXDataset.fashionMNISTName { return .fashionMNIST }
        guard ImageFolder.isDirectory(argument) else {
            throw DataFileError(file: argument, .invalidRequest(
                "not a folder (expected fashion-mnist, a folder of IDX files or an ImageFolder)"))
        }
        let idxNames = ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"].flatMap { [$0, $0 + ".gz"] }
        if idxNames.contains(where: { FileManager.default.fileExists(atPath: ImageFolder.join(argument, $0)) }) {
            return .idxFolder(argument)
        }
        if ImageFolder.isDirectory(ImageFolder.join(argument, "train")) { return .imageFolderSplits(argument) }
        return .imageFolder(argument)
    }
}

extension Dataset {
    /// Loads `argument` (see `DataSource.resolve`) for a model: training (minus any validation share), validation,
    /// and test where the data has one. Class subsets apply to every split.
    public static func load(_ argument: String, options: DatasetOptions) throws -> DatasetSplits {
        let source = try DataSource.resolve(argument)
        let trainingStore: ImageStore
        var validationStore: ImageStore?
        var testStore: ImageStore?
        var folders: ImageFolderSplits?
        let trainingScaling = options.reducedTrainingDecode ? DecodeScaling.reduced(shorterSide: options.side) : .full
        var names = (training: argument, validation: argument + "/val", test: argument)
        switch source {
        case .fashionMNIST, .idxFolder:
            trainingStore = ImageStore(try IDXDataset.load(argument, split: .train), origin: argument)
            testStore = ImageStore(try IDXDataset.load(argument, split: .test), origin: argument)
            names = (argument + " train", argument + " train", argument + " test")
        case let .imageFolderSplits(folder):
            let train = ImageFolder.join(folder, "train")
            let present = { (split: String) in
                ImageFolder.isDirectory(ImageFolder.join(folder, split)) ? ImageFolder.join(folder, split) : nil
            }
            let splits = try ImageFolderSplits(training: train, validation: present("val"), test: present("test"),
                                               trainingScaling: trainingScaling, options: options)
            folders = splits
            trainingStore = splits.training
            validationStore = splits.validation
            testStore = splits.test
            names = (train, ImageFolder.join(folder, "val"), ImageFolder.join(folder, "test"))
        case let .imageFolder(folder):
            let splits = try ImageFolderSplits(training: folder, validation: nil, test: nil,
                                               trainingScaling: trainingScaling, options: options)
            folders = splits
            trainingStore = splits.training
        }
        let isImageFolder = folders != nil

        let preparation = try makePreparation(options, isImageFolder: isImageFolder, origin: argument)
        func restrict(_ dataset: Dataset) throws -> Dataset {
            guard let classes = options.classes else { return dataset }
            return try dataset.subset(classes: classes, remap: options.remapLabels)
        }
        var training = try restrict(try Dataset(store: trainingStore, preparation: preparation, name: names.training))
        var validation = try validationStore.map {
            try restrict(try Dataset(store: $0, preparation: preparation, name: names.validation))
        }
        if options.validationFraction > 0 {
            let split = try training.splitValidation(fraction: options.validationFraction, seed: options.seed)
            training = split.training
            validation = split.validation
        }
        // Set after the split: a validation share carved from training is evaluated, so decoded at full size.
        if isImageFolder { training.decodeScaling = trainingScaling }
        let test = try testStore.map { try restrict(try Dataset(store: $0, preparation: preparation, name: names.test)) }
        return DatasetSplits(training: training, validation: validation, test: test, log: folders?.log)
    }

    /// The options' preprocessing, or the data set's default: Fashion-MNIST's statistics and no crop for IDX data,
    /// ImageNet's (timm's channel average for a one-channel model) and crop 0.875 for ImageFolders, bicubic. One
    /// mean or std value applies to every channel.
    public static func makePreparation(_ options: DatasetOptions, isImageFolder: Bool, origin: String) throws -> ImagePreparation {
        let channels = options.channels
        guard channels >= 1 && options.side >= 1 else {
            throw DataFileError(file: origin, .invalidRequest("model input \(channels)×\(options.side)² is empty"))
        }
        let defaults: (means: [Double], stds: [Double])
        if !isImageFolder {
            defaults = ([ImagePreparation.fashionMNISTMean], [ImagePreparation.fashionMNISTStd])
        } else if channels == 3 {
            defaults = (ImagePreparation.imageNetMeans, ImagePreparation.imageNetStds)
        } else {
            defaults = ([ImagePreparation.imageNetGreyMean], [ImagePreparation.imageNetGreyStd])
        }
        func perChannel(_ values: [Double], _ what: String) throws -> [Double] {
            guard values.allSatisfy({ $0.isFinite }) else {
                throw DataFileError(file: origin, .invalidRequest("\(what) \(values) is not finite"))
            }
            if values.count == channels { return values }
            if values.count == 1 { return Array(repeating: values[0], count: channels) }
            throw DataFileError(file: origin, .invalidRequest(
                "\(what) has \(values.count) values; the model has \(channels) channels (give 1 or \(channels))"))
        }
        let means = try perChannel(options.means ?? defaults.means, "mean")
        let stds = try perChannel(options.stds ?? defaults.stds, "std")
        guard stds.allSatisfy({ $0 > 0 }) else { throw DataFileError(file: origin, .invalidRequest("std \(stds) must be positive")) }
        let cropPct = options.cropPct ?? (isImageFolder ? 0.875 : 1)
        guard cropPct > 0 && cropPct <= 1 else {
            throw DataFileError(file: origin, .invalidRequest("crop_pct \(cropPct) is not in (0, 1]"))
        }
        return ImagePreparation(means: means, stds: stds, channels: channels, side: options.side,
                                filter: options.filter ?? .bicubic, cropPct: cropPct)
    }
}
