import Dispatch

/// Labelled images: IDX data sets decoded in memory (grey bytes back to back in one array), or an ImageFolder's
/// files, listed with their labels and header shapes and decoded each time an image is used (optionally with the
/// decoded bytes kept in memory: `cachingDecoded`). IDX data sets and ImageFolders both end up here, so everything
/// above (subsets, splits, batches) handles one type.
public struct ImageStore: Sendable {
    public struct Shape: Equatable, Hashable, Sendable {
        public var width: Int
        public var height: Int
        /// 1 (grey) or 3 (RGB).
        public var channels: Int

        public init(width: Int, height: Int, channels: Int) {
            self.width = width
            self.height = height
            self.channels = channels
        }

        public var bytes: Int { width * height * channels }
    }

    /// Decoded images' [height, width, channels] bytes, image after image: IDX data, or a cached folder's images
    /// decoded with `cachedScaling`. Empty for a streamed folder.
    public private(set) var pixels: [UInt8]
    /// [count] where each image starts in `pixels` and its shape there (empty for a streamed folder).
    public private(set) var offsets: [Int]
    public private(set) var decodedShapes: [Shape]
    /// [count]: each image's shape at full size (a folder's: read from the file's header).
    public private(set) var shapes: [Shape]
    /// [count]: whether the file is a JPEG, which `DecodeScaling.reduced` decodes smaller (PNGs and IDX: false).
    public private(set) var isJPEG: [Bool]
    /// [count], class indices into `classNames`.
    public private(set) var labels: [Int32]
    /// [count] when the images came from files (an ImageFolder), for messages and decoding; nil for IDX data.
    public private(set) var files: [String]?
    public let classNames: [String]
    /// Where the images came from (a folder or `fashion-mnist`), for messages.
    public let origin: String
    /// How the bytes in `pixels` of a folder were decoded; nil when `pixels` are the images themselves (IDX data)
    /// or there are none (a streamed folder).
    public private(set) var cachedScaling: DecodeScaling?
    /// A folder's listing and decoding record (skipped files, left-out files); nil for IDX data.
    public let log: ImageFolderLog?
    /// Labels whose class folder exists here but holds no image that could be read.
    public internal(set) var emptyClasses: [Int] = []

    /// A folder's images, to be decoded from `files` on use.
    init(origin: String, classNames: [String], files: [String], shapes: [Shape], isJPEG: [Bool], labels: [Int32],
         log: ImageFolderLog) {
        precondition(files.count == shapes.count && files.count == labels.count && files.count == isJPEG.count,
                     "one shape, kind and label per file")
        self.origin = origin
        self.classNames = classNames
        self.files = files
        self.shapes = shapes
        self.isJPEG = isJPEG
        self.labels = labels
        self.log = log
        pixels = []
        offsets = []
        decodedShapes = []
    }

    /// An IDX data set's grey images, sharing its pixel array (no copy). Class names are the data set's or, where it
    /// has none, the numbers 0 ..< its largest label + 1.
    public init(_ images: LabeledImages, origin: String) {
        self.origin = origin
        classNames = (0..<images.classCount).map { images.className($0) }
        pixels = images.pixels
        let plane = images.height * images.width
        offsets = (0..<images.count).map { $0 * plane }
        shapes = Array(repeating: Shape(width: images.width, height: images.height, channels: 1), count: images.count)
        decodedShapes = shapes
        isJPEG = Array(repeating: false, count: images.count)
        labels = images.labels.map { Int32($0) }
        files = nil
        log = nil
    }

    public var count: Int { labels.count }
    public var classCount: Int { classNames.count }
    /// Whether images are decoded from their files on use (a folder not cached in memory).
    public var streams: Bool { files != nil && pixels.isEmpty && count > 0 }

    /// The file image `index` came from, or the data set and the index.
    public func name(of index: Int) -> String {
        if let files, files.indices.contains(index) { return files[index] }
        return "\(origin) image \(index)"
    }

    /// Calls `body` with image `index` as `scaling` asks for it: seen in place when it is held in memory that way,
    /// otherwise decoded from its file now (a corrupt file throws its `DataFileError`).
    public func withImage<Result>(_ index: Int, scaling: DecodeScaling = .full,
                                  _ body: (RawImage) throws -> Result) throws -> Result {
        if !pixels.isEmpty && (cachedScaling == nil || cachedScaling == scaling) {
            let shape = decodedShapes[index]
            let start = offsets[index]
            return try pixels.withUnsafeBufferPointer { all in
                try body(RawImage(pixels: UnsafeBufferPointer(rebasing: all[start..<(start + shape.bytes)]),
                                  width: shape.width, height: shape.height, channels: shape.channels))
            }
        }
        let image = try DecodedImage(file: name(of: index), scaleDenominator: denominator(of: index, scaling))
        // The header promised the channels the model was checked against; a file changed since must not feed others.
        guard image.shape.channels == shapes[index].channels else {
            throw DataFileError(file: name(of: index), .corruptImage(
                "decodes to \(image.shape.channels) channels, its header said \(shapes[index].channels)"))
        }
        return try image.pixels.withUnsafeBufferPointer {
            try body(RawImage(pixels: $0, width: image.shape.width, height: image.shape.height,
                              channels: image.shape.channels))
        }
    }

    /// 1, 2, 4 or 8: how much smaller than full size image `index` is decoded with `scaling` (JPEGs only).
    public func denominator(of index: Int, _ scaling: DecodeScaling) -> Int {
        isJPEG[index] ? scaling.denominator(for: shapes[index]) : 1
    }

    /// Bytes the decoded images would take in memory, decoded with `scaling`.
    public func decodedBytes(scaling: DecodeScaling) -> Int {
        shapes.indices.reduce(0) { total, index in
            let (shape, denominator) = (shapes[index], self.denominator(of: index, scaling))
            let width = (shape.width + denominator - 1) / denominator
            let height = (shape.height + denominator - 1) / denominator
            return total + width * height * shape.channels
        }
    }

    /// This folder with every image decoded (on all cores) into memory with `scaling`: the whole-folder decode.
    /// A file that fails to decode is left out (`.skip`, one warning, counted in the log) or ends the load (`.fail`,
    /// the first failing file in listing order). Labels, order and warnings do not depend on the timing.
    public func cachingDecoded(scaling: DecodeScaling) throws -> ImageStore {
        guard let files, let log, pixels.isEmpty else { return self }
        // [count]: each file's decoded image or its error, filled concurrently, read in file order.
        let results = UnsafeMutableBufferPointer<Result<DecodedImage, DataFileError>?>.allocate(capacity: count)
        results.initialize(repeating: nil)
        defer {
            results.deinitialize()
            results.deallocate()
        }
        DispatchQueue.concurrentPerform(iterations: count) { index in
            results[index] = Result {
                try DecodedImage(file: files[index], scaleDenominator: denominator(of: index, scaling))
            }.mapError { $0 as? DataFileError ?? DataFileError(file: files[index], .io(String(describing: $0))) }
        }
        var cached = ImageStore(origin: origin, classNames: classNames, files: [], shapes: [], isJPEG: [], labels: [],
                                log: log)
        cached.cachedScaling = scaling
        cached.pixels.reserveCapacity(decodedBytes(scaling: scaling))
        for index in 0..<count {
            switch results[index] {
            case let .success(image)?:
                cached.offsets.append(cached.pixels.count)
                cached.pixels.append(contentsOf: image.pixels)
                cached.decodedShapes.append(image.shape)
                cached.shapes.append(shapes[index])
                cached.isJPEG.append(isJPEG[index])
                cached.labels.append(labels[index])
                cached.files?.append(files[index])
            case let .failure(error)?:
                try log.skip(error)
            case nil:
                throw DataFileError(file: files[index], .io("not decoded"))
            }
        }
        guard cached.count > 0 else {
            throw DataFileError(file: origin, .invalidRequest("every image file failed to decode"))
        }
        let present = Set(cached.labels)
        cached.emptyClasses = (emptyClasses + Set(labels).subtracting(present).map { Int($0) }).sorted()
        return cached
    }
}

/// The size at which a folder's JPEGs are decoded. Training uses `.reduced`: libjpeg's DCT scaling (1/2, 1/4, 1/8)
/// decodes a big photo several times faster than at full size and resizing after; evaluation decodes at `.full`
/// size so that its numbers keep matching timm's. PNGs are always decoded at full size.
public enum DecodeScaling: Hashable, Sendable {
    case full
    /// The smallest DCT scale whose shorter side is still at least `shorterSide` pixels (the side the transform
    /// resizes to, so the scaled image still has at least as many pixels across as the crop takes).
    case reduced(shorterSide: Int)

    /// 1, 2, 4 or 8: the decoded sides are ceil(side / denominator).
    public func denominator(for shape: ImageStore.Shape) -> Int {
        guard case let .reduced(needed) = self else { return 1 }
        let shorter = min(shape.width, shape.height)
        return [8, 4, 2].first { (shorter + $0 - 1) / $0 >= needed } ?? 1
    }
}
