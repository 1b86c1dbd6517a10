import Foundation

/// Grey-scale images with one class label each, as the MNIST family stores them: `count` images of
/// `height × width` bytes, row-major, image after image.
public struct LabeledImages: Sendable {
    public let count: Int
    public let height: Int
    public let width: Int
    /// [count, height, width], 0...255.
    public let pixels: [UInt8]
    /// [count], class indices.
    public let labels: [UInt8]
    /// Class names by index, where the data set has them (Fashion-MNIST does; a plain IDX folder does not).
    public let classNames: [String]?

    public init(count: Int, height: Int, width: Int, pixels: [UInt8], labels: [UInt8], classNames: [String]? = nil) {
        self.count = count
        self.height = height
        self.width = width
        self.pixels = pixels
        self.labels = labels
        self.classNames = classNames
    }

    /// Reads an images file and a labels file and checks they describe the same items.
    public init(imagesPath: String, labelsPath: String, classNames: [String]? = nil) throws {
        let images = try IDXFile(path: imagesPath, magic: IDXFile.imagesMagic, kind: "images")
        let labels = try IDXFile(path: labelsPath, magic: IDXFile.labelsMagic, kind: "labels")
        guard images.dimensions[0] == labels.dimensions[0] else {
            throw DataFileError(file: labelsPath, .countMismatch(images: images.dimensions[0],
                                                                 labels: labels.dimensions[0], imagesFile: imagesPath))
        }
        self.init(count: images.dimensions[0], height: images.dimensions[1], width: images.dimensions[2],
                  pixels: images.bytes, labels: labels.bytes, classNames: classNames)
    }

    /// One past the largest label (the number of classes the data set uses).
    public var classCount: Int { Int(labels.max() ?? 0) + 1 }

    /// Positions of the images whose label is in `classes`, in file order (all images when `classes` is nil).
    public func indices(ofClasses classes: Set<Int>?) -> [Int] {
        guard let classes else { return Array(0..<count) }
        return labels.indices.filter { classes.contains(Int(labels[$0])) }
    }

    /// The name of class `index`, or its number when the data set has no names.
    public func className(_ index: Int) -> String {
        guard let classNames, classNames.indices.contains(index) else { return String(index) }
        return classNames[index]
    }
}

/// The two splits of an IDX data set.
public enum DataSplit: String, CaseIterable, Sendable {
    case train
    case test

    /// The MNIST family's file stem: `train` and `t10k`.
    var stem: String { self == .train ? "train" : "t10k" }
}

/// Where IDX data sets live and what they are called.
public enum IDXDataset {
    /// The Debian package `dataset-fashion-mnist`'s folder, what `--data fashion-mnist` means.
    public static let fashionMNISTFolder = "/usr/share/datasets/fashion-mnist"
    public static let fashionMNISTName = "fashion-mnist"
    public static let fashionMNISTClassNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                                "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// `fashion-mnist` (the Debian package's files) or a folder holding
    /// `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each gzipped or not.
    public static func load(_ source: String, split: DataSplit) throws -> LabeledImages {
        let isFashionMNIST = source == fashionMNISTName
        let folder = isFashionMNIST ? fashionMNISTFolder : source
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            let hint = isFashionMNIST ? " (install the Debian package dataset-fashion-mnist)"
                : " (expected fashion-mnist or a folder of IDX files)"
            throw DataFileError(file: folder, .invalidRequest("not a folder" + hint))
        }
        let images = try find(folder, split.stem + "-images-idx3-ubyte")
        let labels = try find(folder, split.stem + "-labels-idx1-ubyte")
        return try LabeledImages(imagesPath: images, labelsPath: labels,
                                 classNames: isFashionMNIST ? fashionMNISTClassNames : nil)
    }

    /// `folder/name.gz` if present, else `folder/name`.
    static func find(_ folder: String, _ name: String) throws -> String {
        let base = URL(fileURLWithPath: folder).appendingPathComponent(name).path
        let candidates = [base + ".gz", base]
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw DataFileError(file: base, .notFound(tried: candidates.map { URL(fileURLWithPath: $0).lastPathComponent }))
    }
}
