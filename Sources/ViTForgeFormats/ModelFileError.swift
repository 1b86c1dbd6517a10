/// Every failure of reading, validating or writing a model file. `description` is one line that names the file,
/// the tensor where there is one, and the problem:
/// `fm.safetensors: tensor "blocks.3.mlp.fc1.weight": shape [768, 192] expected, file has [384, 192]`.
public struct ModelFileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The path as the caller gave it (or `inMemory` for weights that never came from a file).
    public var file: String
    /// The tensor (or metadata key) concerned, if any.
    public var key: String?
    public var reason: Reason

    /// The `file` of errors about weights built in memory (pruning surgery, tests) rather than read from disk.
    public static let inMemory = "<in-memory weights>"

    public init(file: String, key: String? = nil, _ reason: Reason) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public enum Reason: Equatable, Sendable {
        /// The file could not be opened, read, created or renamed; `message` is the system's reason.
        case io(String)
        /// Shorter than the 8-byte header length.
        case truncated(fileLength: Int)
        /// A PyTorch pickle (`.pth`/`.pt` with protocol byte 0x80) or a torch zip archive (`PK\x03\x04`).
        case pickle(zip: Bool, conversion: String)
        case headerTooLarge(headerLength: UInt64, limit: Int)
        case headerPastEnd(headerLength: UInt64, fileLength: Int)
        case headerNotObject
        case invalidJSON(String)
        /// A header entry that is not `{dtype, shape, data_offsets}` or a malformed `__metadata__`.
        case invalidEntry(String)
        case duplicateKey
        case unknownDtype(String)
        case offsetsOutsideBuffer(begin: UInt64, end: UInt64, bufferLength: Int)
        case offsetsOverlap(previous: String)
        case hole(previous: String?, bytes: UInt64)
        case sizeMismatch(expectedBytes: UInt64, actualBytes: UInt64)
        /// Bytes after the last tensor ("no polyglot files").
        case trailingBytes(UInt64)
        case missingKey
        case wrongShape(expected: [Int], actual: [Int])
        /// A tensor whose dtype the caller cannot use (`U8` where floats are needed).
        case wrongDtype(String, wanted: String)
        /// A tensor the configuration does not explain.
        case unexpectedKey
        /// A known timm/HF variant ViTForge does not implement, named.
        case unsupportedVariant(String)
        /// The state dict's shapes do not determine the number of heads.
        case headsUnknown(embedDim: Int)
        /// `vitforge.config` missing fields, or a configuration that cannot describe a model.
        case invalidConfig(String)
        /// Refused to write over the file the model was read from.
        case wouldOverwriteInput
        /// A tensor handed to the writer whose values do not fill its shape, or a name the format reserves.
        case invalidTensor(String)
    }

    public var description: String {
        var line = file + ": "
        if let key { line += "tensor \(quoted(key)): " }
        line += reasonText
        // One line, whatever a key or a system message contained.
        return line.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    }

    private var reasonText: String {
        switch reason {
        case let .io(message):
            return message
        case let .truncated(length):
            return "truncated: \(length) bytes, shorter than the 8-byte header length of a safetensors file"
        case let .pickle(zip, conversion):
            let kind = zip ? "a PyTorch zip checkpoint (.pth/.pt, pickled inside)" : "a Python pickle (.pth/.pt)"
            return "refused: \(kind); loading pickle can execute arbitrary code. Convert it once to safetensors: "
                + conversion
        case let .headerTooLarge(length, limit):
            return "header length \(length) bytes exceeds the format's limit of \(limit) bytes"
        case let .headerPastEnd(length, fileLength):
            return "header length \(length) bytes runs past the end of the file (\(fileLength) bytes)"
        case .headerNotObject:
            return "header does not start with '{' (not a safetensors file)"
        case let .invalidJSON(message):
            return "header is not valid JSON: \(message)"
        case let .invalidEntry(message):
            return message
        case .duplicateKey:
            return "appears twice in the header"
        case let .unknownDtype(dtype):
            return "unknown dtype \(quoted(dtype))"
        case let .offsetsOutsideBuffer(begin, end, bufferLength):
            return "data_offsets [\(begin), \(end)] lie outside the \(bufferLength)-byte data buffer"
        case let .offsetsOverlap(previous):
            return "data_offsets overlap those of tensor \(quoted(previous))"
        case let .hole(previous, bytes):
            let after = previous.map { "after tensor \(quoted($0))" } ?? "at the start of the data buffer"
            return "\(bytes) unused bytes \(after) (tensors must be contiguous)"
        case let .sizeMismatch(expected, actual):
            return "data_offsets span \(actual) bytes, shape × dtype size needs \(expected)"
        case let .trailingBytes(count):
            return "\(count) bytes after the last tensor (file length must equal 8 + header + data exactly)"
        case .missingKey:
            return "missing"
        case let .wrongShape(expected, actual):
            return "shape \(expected) expected, file has \(actual)"
        case let .wrongDtype(dtype, wanted):
            return "dtype \(dtype) cannot be read as \(wanted)"
        case .unexpectedKey:
            return "not part of the model described by the configuration"
        case let .unsupportedVariant(message):
            return "unsupported model variant: \(message)"
        case let .headsUnknown(embedDim):
            return "the number of attention heads cannot be inferred from shapes (embed dim \(embedDim)); "
                + "pass --heads"
        case let .invalidConfig(message):
            return "invalid configuration: \(message)"
        case .wouldOverwriteInput:
            return "refusing to overwrite the input file; choose another output path"
        case let .invalidTensor(message):
            return message
        }
    }
}

/// A name in double quotes, escaped as a JSON string literal, so quotes and control characters in a key cannot
/// break the error's single line.
func quoted(_ name: String) -> String {
    jsonStringLiteral(name)
}
