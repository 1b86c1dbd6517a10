/// Labelled images as decoded: bytes, grey or RGB, each at its own size, back to back in one array. IDX data sets
/// and ImageFolders both end up here, so everything above (subsets, splits, batches) handles one type.
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

    /// Every image's [height, width, channels] bytes, image after image.
    public private(set) var pixels: [UInt8]
    /// [count]: where each image starts in `pixels`, and its shape.
    public private(set) var offsets: [Int]
    public private(set) var shapes: [Shape]
    /// [count], class indices into `classNames`.
    public private(set) var labels: [Int32]
    /// [count] when the images came from files (an ImageFolder), for messages; nil for IDX data.
    public private(set) var files: [String]?
    public let classNames: [String]
    /// Where the images came from (a folder or `fashion-mnist`), for messages.
    public let origin: String

    public init(origin: String, classNames: [String]) {
        self.origin = origin
        self.classNames = classNames
        pixels = []
        offsets = []
        shapes = []
        labels = []
        files = []
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
        labels = images.labels.map { Int32($0) }
        files = nil
    }

    public var count: Int { labels.count }
    public var classCount: Int { classNames.count }

    /// Adds one image; `pixels` holds `shape.bytes` bytes.
    public mutating func append(pixels newPixels: UnsafeBufferPointer<UInt8>, shape: Shape, label: Int32, file: String) {
        precondition(newPixels.count == shape.bytes, "pixel count does not match the shape")
        offsets.append(pixels.count)
        pixels.append(contentsOf: newPixels)
        shapes.append(shape)
        labels.append(label)
        files?.append(file)
    }

    /// The file image `index` came from, or the data set and the index.
    public func name(of index: Int) -> String {
        if let files, files.indices.contains(index) { return files[index] }
        return "\(origin) image \(index)"
    }

    /// Calls `body` with image `index` seen in place.
    public func withImage<Result>(_ index: Int, _ body: (RawImage) throws -> Result) rethrows -> Result {
        let shape = shapes[index]
        let start = offsets[index]
        return try pixels.withUnsafeBufferPointer { all in
            try body(RawImage(pixels: UnsafeBufferPointer(rebasing: all[start..<(start + shape.bytes)]),
                              width: shape.width, height: shape.height, channels: shape.channels))
        }
    }
}
