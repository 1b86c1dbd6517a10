/// Every failure of finding or reading a data file. `description` is one line that names the file and the problem:
/// `t10k-labels-idx1-ubyte.gz: magic 0x00000803 is not an IDX label file's 0x00000801`.
public struct DataFileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The path as found or given.
    public var file: String
    public var reason: Reason

    public init(file: String, _ reason: Reason) {
        self.file = file
        self.reason = reason
    }

    public enum Reason: Equatable, Sendable {
        /// The file could not be opened or read; `message` is the system's or zlib's reason.
        case io(String)
        /// Neither the name nor the name with `.gz` exists in the folder.
        case notFound(tried: [String])
        case wrongMagic(found: UInt32, expected: UInt32, kind: String)
        /// The header's dimensions cannot describe a data set ViTForge reads (zero or too large).
        case invalidDimensions([Int])
        /// Fewer bytes than the header promises.
        case truncated(expectedBytes: Int, actualBytes: Int)
        /// Bytes after the data the header describes.
        case trailingBytes
        /// The images file and the labels file hold different numbers of items.
        case countMismatch(images: Int, labels: Int, imagesFile: String)
        /// A request the data cannot satisfy (a class that has no images, an unknown split).
        case invalidRequest(String)
        /// A PNG or JPEG that does not decode; `message` is the decoder's reason.
        case corruptImage(String)
    }

    public var description: String {
        let line = file + ": " + reasonText
        return line.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    }

    private var reasonText: String {
        switch reason {
        case let .io(message):
            return message
        case let .notFound(tried):
            return "not found (tried \(tried.joined(separator: ", ")))"
        case let .wrongMagic(found, expected, kind):
            return "magic \(hex(found)) is not an IDX \(kind) file's \(hex(expected))"
        case let .invalidDimensions(dims):
            return "IDX dimensions \(dims) are empty or beyond ViTForge's limits"
        case let .truncated(expected, actual):
            return "truncated: the IDX header promises \(expected) data bytes, the file has \(actual)"
        case .trailingBytes:
            return "bytes after the data the IDX header describes (not an IDX file, or a damaged one)"
        case let .countMismatch(images, labels, imagesFile):
            return "\(labels) labels, but \(imagesFile) holds \(images) images"
        case let .invalidRequest(message):
            return message
        case let .corruptImage(message):
            return "corrupt image: " + message
        }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
