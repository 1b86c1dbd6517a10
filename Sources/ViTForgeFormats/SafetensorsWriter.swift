import Foundation
import ViTForgeSupport

/// Values of one tensor to be written, in the element type it is stored as.
public enum TensorValues: Equatable, Sendable {
    case float32([Float])
    case float64([Double])
    case int64([Int64])
    case int32([Int32])

    public var dtype: SafetensorsDType {
        switch self {
        case .float32: return .f32
        case .float64: return .f64
        case .int64: return .i64
        case .int32: return .i32
        }
    }

    public var count: Int {
        switch self {
        case let .float32(values): return values.count
        case let .float64(values): return values.count
        case let .int64(values): return values.count
        case let .int32(values): return values.count
        }
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case let .float32(values): return try values.withUnsafeBytes(body)
        case let .float64(values): return try values.withUnsafeBytes(body)
        case let .int64(values): return try values.withUnsafeBytes(body)
        case let .int32(values): return try values.withUnsafeBytes(body)
        }
    }
}

/// A named tensor for `SafetensorsWriter`.
public struct NamedTensor: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var values: TensorValues

    public init(name: String, shape: [Int], values: TensorValues) {
        self.name = name
        self.shape = shape
        self.values = values
    }

    public init(name: String, shape: [Int], floats: [Float]) {
        self.init(name: name, shape: shape, values: .float32(floats))
    }
}

/// Writes safetensors files the way the reference writer does, plus atomically:
/// - the header is JSON with `__metadata__` first; it always holds `"format": "pt"` (HF loaders refuse files without
///   it) next to the caller's keys, sorted by key;
/// - tensors are laid out by descending element size, then by name (byte order), so every tensor is naturally
///   aligned and the same tensors always produce the same bytes;
/// - the header is padded with spaces so that the data starts at a multiple of 8 bytes;
/// - the file is written to a temporary file in the destination's folder and renamed over the destination, so a
///   reader sees the old file or the new one, never half of one. Any failure removes the temporary file.
///
/// Overwriting: a destination that is the same file as one of `inputs` (same path, a link to it, or the same inode)
/// is refused, since DESIGN.md promises inputs are never overwritten. Replacing any other existing file is allowed —
/// that is what re-running a command with the same `--out` does.
public enum SafetensorsWriter {
    public static func write(_ tensors: [NamedTensor], metadata: [String: String] = [:], to path: String,
                             protecting inputs: [String] = []) throws {
        let (header, ordered) = try encodeHeader(tensors, metadata: metadata, path: path)
        for input in inputs where sameFile(path, input) {
            throw ModelFileError(file: path, .wouldOverwriteInput)
        }
        try writeAtomically(to: path) { descriptor in
            try writeAll(descriptor, path: path, header)
            for tensor in ordered {
                try tensor.values.withUnsafeBytes { try writeAll(descriptor, path: path, $0) }
            }
        }
    }

    /// The header bytes (length prefix included) and the tensors in file order.
    static func encodeHeader(_ tensors: [NamedTensor], metadata: [String: String], path: String)
        throws -> ([UInt8], [NamedTensor]) {
        var seen = Set<String>()
        for tensor in tensors {
            func invalid(_ message: String) -> ModelFileError {
                ModelFileError(file: path, key: tensor.name, .invalidTensor(message))
            }
            if tensor.name.isEmpty || tensor.name == "__metadata__" {
                throw invalid("the name is reserved or empty")
            }
            guard seen.insert(tensor.name).inserted else { throw invalid("given twice") }
            guard tensor.shape.allSatisfy({ $0 >= 0 }) else { throw invalid("negative dimension in \(tensor.shape)") }
            var count = 1
            for dim in tensor.shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dim)
                guard !overflow else { throw invalid("shape \(tensor.shape) overflows") }
                count = product
            }
            guard count == tensor.values.count else {
                throw invalid("shape \(tensor.shape) needs \(count) values, \(tensor.values.count) given")
            }
        }
        let ordered = tensors.sorted { a, b in
            let (sizeA, sizeB) = (a.values.dtype.bits, b.values.dtype.bits)
            if sizeA != sizeB { return sizeA > sizeB }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }

        var fullMetadata = metadata
        fullMetadata["format"] = "pt"
        let metadataText = fullMetadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            .map { jsonStringLiteral($0) + ":" + jsonStringLiteral(fullMetadata[$0] ?? "") }
            .joined(separator: ",")
        var json = "{\"__metadata__\":{" + metadataText + "}"
        var offset = 0
        for tensor in ordered {
            let byteCount = tensor.values.count * tensor.values.dtype.bits / 8
            json += "," + jsonStringLiteral(tensor.name) + ":{\"dtype\":\"" + tensor.values.dtype.rawValue
                + "\",\"shape\":[" + tensor.shape.map(String.init).joined(separator: ",")
                + "],\"data_offsets\":[\(offset),\(offset + byteCount)]}"
            offset += byteCount
        }
        json += "}"
        var headerJSON = Array(json.utf8)
        let padded = (headerJSON.count + 7) / 8 * 8
        headerJSON += [UInt8](repeating: UInt8(ascii: " "), count: padded - headerJSON.count)
        guard headerJSON.count <= SafetensorsFile.maximumHeaderLength else {
            throw ModelFileError(file: path, .headerTooLarge(headerLength: UInt64(headerJSON.count),
                                                              limit: SafetensorsFile.maximumHeaderLength))
        }
        var bytes = withUnsafeBytes(of: UInt64(headerJSON.count).littleEndian) { Array($0) }
        bytes += headerJSON
        return (bytes, ordered)
    }

    // MARK: Files

    /// Creates a temporary file next to `path`, lets `body` fill it, flushes it to disk and renames it to `path`.
    /// Also used for JSON configs and reports, so every output of the model layer is written the same way.
    public static func writeAtomically(to path: String, _ body: (Int32) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporaryPrefix = "." + url.lastPathComponent + ".tmp-"
        removeAbandonedTemporaries(in: folder, prefix: temporaryPrefix)
        let temporary = folder + "/" + temporaryPrefix + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ModelFileError(file: path, .io("cannot create a file in \(folder): "
                                                                          + systemMessage())) }
        var closed = false
        do {
            try body(descriptor)
            if FaultInjection.writeShouldFail() {
                // As a disk that filled up half-way: part of the bytes are there, the write fails.
                let written = lseek(descriptor, 0, SEEK_CUR)
                _ = ftruncate(descriptor, written / 2)
                throw ModelFileError(file: path, .io("write: No space left on device (injected fault)"))
            }
            guard fsync(descriptor) == 0 else { throw ModelFileError(file: path, .io("fsync: " + systemMessage())) }
            closed = true
            guard close(descriptor) == 0 else { throw ModelFileError(file: path, .io("close: " + systemMessage())) }
            guard rename(temporary, path) == 0 else {
                throw ModelFileError(file: path, .io("rename: " + systemMessage()))
            }
        } catch {
            if !closed { close(descriptor) }
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable; failure here leaves a correct file, so it is not an error.
        let folderDescriptor = open(folder, O_RDONLY | O_CLOEXEC)
        if folderDescriptor >= 0 {
            fsync(folderDescriptor)
            close(folderDescriptor)
        }
    }

    /// Deletes the temporary files of this destination that a killed writer left behind (`PREFIX<pid>-<random>`
    /// whose process no longer exists), so that kill -9 during a save does not leave a checkpoint-sized file per
    /// kill. Files of live processes (another run writing the same name) are left alone.
    private static func removeAbandonedTemporaries(in folder: String, prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count).prefix { $0 != "-" }) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder + "/" + name) }
        }
    }

    static func writeAll(_ descriptor: Int32, path: String, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeAll(descriptor, path: path, $0) }
    }

    static func writeAll(_ descriptor: Int32, path: String, _ bytes: UnsafeRawBufferPointer) throws {
        guard var cursor = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let written = Foundation.write(descriptor, cursor, remaining)
            if written < 0 {
                if errno == EINTR { continue }
                throw ModelFileError(file: path, .io("write: " + systemMessage()))
            }
            cursor += written
            remaining -= written
        }
    }

    /// Whether two paths name the same existing file (after links), by device and inode.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var statA = stat()
        var statB = stat()
        guard stat(a, &statA) == 0, stat(b, &statB) == 0 else { return false }
        return statA.st_dev == statB.st_dev && statA.st_ino == statB.st_ino
    }
}

func systemMessage() -> String {
    String(cString: strerror(errno))
}
