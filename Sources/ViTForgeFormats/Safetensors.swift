import Foundation

#if _endian(big)
#error("safetensors is little-endian; the readers below copy bytes as they are and assume a little-endian host")
#endif

/// A safetensors element type. Every dtype of the format is known (so any valid file validates); `F32`, `F16`, `BF16`
/// and `F64` read as `Float`, `I64` and `I32` as integers.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL"
    case u8 = "U8", i8 = "I8", u16 = "U16", i16 = "I16", u32 = "U32", i32 = "I32", u64 = "U64", i64 = "I64"
    case f16 = "F16", bf16 = "BF16", f32 = "F32", f64 = "F64", c64 = "C64"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2", f8e8m0 = "F8_E8M0"
    case f6e2m3 = "F6_E2M3", f6e3m2 = "F6_E3M2", f4 = "F4"

    /// Bits per element (the sub-byte float formats pack several elements per byte).
    public var bits: Int {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2, .f8e8m0: return 8
        case .u16, .i16, .f16, .bf16: return 16
        case .u32, .i32, .f32: return 32
        case .u64, .i64, .f64, .c64: return 64
        }
    }

    /// Whether `floats(_:)` can convert it.
    public var isReadableAsFloat: Bool { [.f32, .f16, .bf16, .f64].contains(self) }
}

/// One header entry: where a tensor's bytes lie in the data buffer (offsets relative to the buffer's start).
public struct SafetensorsEntry: Equatable, Sendable {
    public var name: String
    public var dtype: SafetensorsDType
    public var shape: [Int]
    public var dataOffsets: Range<Int>

    /// Product of the shape (1 for a 0-rank tensor, 0 when a dimension is 0).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file read once into memory and validated as a whole before any tensor is handed out.
///
/// The checks are the reference implementation's (huggingface/safetensors `tensor.rs`): header ≤ 100,000,000 bytes,
/// header inside the file and starting with `{`, strict JSON without duplicate keys, known dtypes, non-negative integer
/// shapes and offsets, and, with entries sorted by offset, data contiguous from 0 with no holes or overlaps, each
/// `end − begin == numel × dtype size`, and `8 + header + data == file length` exactly.
public struct SafetensorsFile: Sendable {
    public static let maximumHeaderLength = 100_000_000

    /// The path as given; every error names it.
    public let path: String
    /// `__metadata__` (empty when the file has none).
    public let metadata: [String: String]
    /// Entries in data-offset order (the order of the bytes in the file).
    public let entries: [SafetensorsEntry]
    private let entryIndex: [String: Int]
    /// The whole file; tensors are sliced out of it, so nothing reopens the file.
    private let bytes: Data
    private let dataStart: Int

    /// Reads and validates `path`. A PyTorch pickle or zip checkpoint is refused with the conversion command.
    public init(path: String) throws {
        let contents: Data
        do {
            // Mapped where the system allows: a 350 MB ViT-B is then paged in once, while converting to Float.
            contents = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw ModelFileError(file: path, .io(Self.ioMessage(error)))
        }
        try self.init(bytes: contents, path: path)
    }

    /// Validates a file's bytes; `path` is only used in errors.
    public init(bytes: Data, path: String) throws {
        // Rebase so that integer offsets index from 0 whatever `Data` slice we were given.
        let bytes = bytes.startIndex == 0 ? bytes : Data(bytes)
        self.path = path
        self.bytes = bytes
        let fileLength = bytes.count

        if let zip = Self.pickleKind(bytes) {
            throw ModelFileError(file: path, .pickle(zip: zip, conversion: Self.conversionCommand(for: path)))
        }
        guard fileLength >= 8 else { throw ModelFileError(file: path, .truncated(fileLength: fileLength)) }
        let headerLength = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(Self.maximumHeaderLength) else {
            throw ModelFileError(file: path, .headerTooLarge(headerLength: headerLength,
                                                              limit: Self.maximumHeaderLength))
        }
        guard headerLength <= UInt64(fileLength - 8) else {
            throw ModelFileError(file: path, .headerPastEnd(headerLength: headerLength, fileLength: fileLength))
        }
        let headerEnd = 8 + Int(headerLength)
        let headerBytes = [UInt8](bytes[8..<headerEnd])
        guard headerBytes.first == UInt8(ascii: "{") else { throw ModelFileError(file: path, .headerNotObject) }

        let header: HeaderJSON
        do {
            header = try HeaderJSONParser.parse(headerBytes)
        } catch let duplicate as DuplicateKey {
            throw ModelFileError(file: path, key: duplicate.key, .duplicateKey)
        } catch let syntax as HeaderJSONError {
            throw ModelFileError(file: path, .invalidJSON(syntax.message))
        }
        guard case let .object(pairs) = header else { throw ModelFileError(file: path, .headerNotObject) }

        var metadata: [String: String] = [:]
        var entries: [SafetensorsEntry] = []
        for (name, value) in pairs {
            if name == "__metadata__" {
                metadata = try Self.parseMetadata(value, path: path)
            } else {
                entries.append(try Self.parseEntry(name: name, value, path: path))
            }
        }

        let bufferLength = fileLength - headerEnd
        entries.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
            < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name) }
        var expectedStart = 0
        var previous: String?
        for entry in entries {
            let range = entry.dataOffsets
            if range.lowerBound < expectedStart, let previous {
                throw ModelFileError(file: path, key: entry.name, .offsetsOverlap(previous: previous))
            }
            if range.lowerBound > expectedStart {
                throw ModelFileError(file: path, key: entry.name,
                                     .hole(previous: previous, bytes: UInt64(range.lowerBound - expectedStart)))
            }
            let expectedBytes = Self.byteCount(entry)
            guard expectedBytes == UInt64(range.count) else {
                throw ModelFileError(file: path, key: entry.name,
                                     .sizeMismatch(expectedBytes: expectedBytes ?? UInt64.max,
                                                   actualBytes: UInt64(range.count)))
            }
            expectedStart = range.upperBound
            previous = entry.name
        }
        if expectedStart < bufferLength {
            throw ModelFileError(file: path, .trailingBytes(UInt64(bufferLength - expectedStart)))
        }

        self.metadata = metadata
        self.entries = entries
        self.dataStart = headerEnd
        var index: [String: Int] = [:]
        for (position, entry) in entries.enumerated() { index[entry.name] = position }
        self.entryIndex = index

        // Offsets are checked against the buffer last so that a truncated file (a tensor past the end) names the
        // first tensor that does not fit, after the cheaper structural checks.
        for entry in entries where entry.dataOffsets.upperBound > bufferLength {
            throw ModelFileError(file: path, key: entry.name,
                                 .offsetsOutsideBuffer(begin: UInt64(entry.dataOffsets.lowerBound),
                                                       end: UInt64(entry.dataOffsets.upperBound),
                                                       bufferLength: bufferLength))
        }
    }

    // MARK: Access

    /// Tensor names in data-offset order.
    public var names: [String] { entries.map(\.name) }

    public func entry(_ name: String) -> SafetensorsEntry? {
        entryIndex[name].map { entries[$0] }
    }

    public func contains(_ name: String) -> Bool { entryIndex[name] != nil }

    /// The shape of `name`, or a `missingKey` error naming it.
    public func shape(_ name: String) throws -> [Int] {
        try requireEntry(name).shape
    }

    /// The values of `name` as `Float`: F32 copied, F16/BF16 widened exactly, F64 rounded to nearest.
    public func floats(_ name: String) throws -> [Float] {
        let entry = try requireEntry(name)
        let count = entry.elementCount
        let start = dataStart + entry.dataOffsets.lowerBound
        return try bytes.withUnsafeBytes { raw -> [Float] in
            switch entry.dtype {
            case .f32:
                let source = UnsafeRawBufferPointer(rebasing: raw[start..<start + 4 * count])
                return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
                    initialized = count
                }
            case .f16:
                return (0..<count).map { halfToFloat(raw.loadUnaligned(fromByteOffset: start + 2 * $0, as: UInt16.self)) }
            case .bf16:
                return (0..<count).map {
                    Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: start + 2 * $0, as: UInt16.self)) << 16)
                }
            case .f64:
                return (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: start + 8 * $0, as: Double.self)) }
            default:
                throw ModelFileError(file: path, key: name, .wrongDtype(entry.dtype.rawValue, wanted: "float"))
            }
        }
    }

    /// The values of an integer tensor (I64, or I32 widened), e.g. the fixtures' int64 `labels`.
    public func int64s(_ name: String) throws -> [Int64] {
        let entry = try requireEntry(name)
        let start = dataStart + entry.dataOffsets.lowerBound
        return try bytes.withUnsafeBytes { raw -> [Int64] in
            switch entry.dtype {
            case .i64:
                return (0..<entry.elementCount).map { raw.loadUnaligned(fromByteOffset: start + 8 * $0, as: Int64.self) }
            case .i32:
                return (0..<entry.elementCount).map {
                    Int64(raw.loadUnaligned(fromByteOffset: start + 4 * $0, as: Int32.self))
                }
            default:
                throw ModelFileError(file: path, key: name, .wrongDtype(entry.dtype.rawValue, wanted: "integers"))
            }
        }
    }

    /// The values of an integer tensor as `Int32` (what the device layer's label buffers hold); I64 values outside
    /// the Int32 range are an error rather than wrapped.
    public func int32s(_ name: String) throws -> [Int32] {
        try int64s(name).map { value in
            guard let narrow = Int32(exactly: value) else {
                throw ModelFileError(file: path, key: name, .invalidEntry("value \(value) does not fit in Int32"))
            }
            return narrow
        }
    }

    private func requireEntry(_ name: String) throws -> SafetensorsEntry {
        guard let entry = entry(name) else { throw ModelFileError(file: path, key: name, .missingKey) }
        return entry
    }

    // MARK: Header parsing

    private static func parseMetadata(_ value: HeaderJSON, path: String) throws -> [String: String] {
        if value == .null { return [:] }
        guard case let .object(pairs) = value else {
            throw ModelFileError(file: path, .invalidEntry("__metadata__ is \(value.typeName), not a string map"))
        }
        var metadata: [String: String] = [:]
        for (key, item) in pairs {
            guard case let .string(text) = item else {
                throw ModelFileError(file: path, .invalidEntry(
                    "__metadata__ value of \(quoted(key)) is \(item.typeName); the format allows strings only"))
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseEntry(name: String, _ value: HeaderJSON, path: String) throws -> SafetensorsEntry {
        func invalid(_ message: String) -> ModelFileError {
            ModelFileError(file: path, key: name, .invalidEntry(message))
        }
        guard case let .object(fields) = value else {
            throw invalid("entry is \(value.typeName), not {dtype, shape, data_offsets}")
        }
        func field(_ key: String) throws -> HeaderJSON {
            guard let found = fields.first(where: { $0.key == key }) else { throw invalid("entry has no \"\(key)\"") }
            return found.value
        }
        guard case let .string(dtypeName) = try field("dtype") else { throw invalid("\"dtype\" is not a string") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw ModelFileError(file: path, key: name, .unknownDtype(dtypeName))
        }
        guard case let .array(dims) = try field("shape") else { throw invalid("\"shape\" is not an array") }
        var shape: [Int] = []
        for dim in dims {
            guard let size = dim.unsignedInteger, let intSize = Int(exactly: size) else {
                throw invalid("\"shape\" holds something other than a non-negative integer")
            }
            shape.append(intSize)
        }
        guard case let .array(offsets) = try field("data_offsets"), offsets.count == 2 else {
            throw invalid("\"data_offsets\" is not [begin, end]")
        }
        guard let begin = offsets[0].unsignedInteger, let end = offsets[1].unsignedInteger else {
            throw invalid("\"data_offsets\" holds something other than non-negative integers")
        }
        guard begin <= end else { throw invalid("data_offsets [\(begin), \(end)] end before they begin") }
        // Offsets past Int.max cannot be inside any buffer we hold; report them as such.
        guard let intBegin = Int(exactly: begin), let intEnd = Int(exactly: end) else {
            throw ModelFileError(file: path, key: name, .offsetsOutsideBuffer(begin: begin, end: end, bufferLength: 0))
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataOffsets: intBegin..<intEnd)
    }

    /// `numel × bits / 8`, or nil when the product overflows or does not fill whole bytes.
    private static func byteCount(_ entry: SafetensorsEntry) -> UInt64? {
        var bits = UInt64(entry.dtype.bits)
        for dim in entry.shape {
            let (product, overflow) = bits.multipliedReportingOverflow(by: UInt64(dim))
            if overflow { return nil }
            bits = product
        }
        return bits % 8 == 0 ? bits / 8 : nil
    }

    // MARK: Pickle refusal

    /// `false` for a raw pickle (protocol 2+ starts with the PROTO opcode 0x80), `true` for the zip archive
    /// `torch.save` writes since PyTorch 1.6, nil for anything else.
    /// A safetensors file whose header length has 0x80 as its low byte (1 in 32 of the 8-byte-padded lengths) also
    /// starts with 0x80, so a first byte of 0x80 only means pickle when the bytes do not read as a header length
    /// followed by `{` inside the file.
    static func pickleKind(_ bytes: Data) -> Bool? {
        guard let first = bytes.first else { return nil }
        if first == 0x80 && !looksLikeSafetensors(bytes) { return false }
        if bytes.count >= 4, bytes.prefix(4).elementsEqual([0x50, 0x4B, 0x03, 0x04]) { return true }
        return nil
    }

    private static func looksLikeSafetensors(_ bytes: Data) -> Bool {
        guard bytes.count >= 9 else { return false }
        let headerLength = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        return headerLength <= UInt64(bytes.count - 8) && bytes[bytes.startIndex + 8] == UInt8(ascii: "{")
    }

    /// A one-line Python command that converts a checkpoint without ever loading it into ViTForge:
    /// `weights_only=True` keeps torch's unpickler from running arbitrary code, the wrappers timm and DeiT use
    /// (`model`, `state_dict`) are unwrapped, and tensors are made contiguous as `save_file` requires. The output
    /// never names the input (a pickle misnamed `.safetensors` gets `.converted.safetensors`).
    static func conversionCommand(for path: String) -> String {
        let base = (path as NSString).deletingPathExtension
        let output = path.hasSuffix(".safetensors") ? base + ".converted.safetensors" : base + ".safetensors"
        func pythonLiteral(_ text: String) -> String {
            "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
        }
        let code = "import torch, safetensors.torch as st; d = torch.load(\(pythonLiteral(path)), map_location='cpu', "
            + "weights_only=True); d = d.get('model', d.get('state_dict', d)); "
            + "st.save_file({k: v.contiguous() for k, v in d.items()}, \(pythonLiteral(output)), "
            + "metadata={'format': 'pt'})"
        // Inside shell double quotes only \ " $ ` are special.
        var shellQuoted = ""
        for character in code {
            if "\\\"$`".contains(character) { shellQuoted.append("\\") }
            shellQuoted.append(character)
        }
        return "python3 -c \"" + shellQuoted + "\""
    }

    static func ioMessage(_ error: Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
           nsError.domain == NSCocoaErrorDomain, underlying.domain == NSPOSIXErrorDomain,
           let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(cString: strerror(code.rawValue))
        }
        if nsError.domain == NSCocoaErrorDomain, nsError.code == NSFileReadNoSuchFileError {
            return "no such file"
        }
        return nsError.localizedDescription
    }
}

/// IEEE 754 binary16 → binary32, exact for every value (subnormals, infinities and NaN payloads included).
func halfToFloat(_ half: UInt16) -> Float {
    let sign: UInt32 = UInt32(half & 0x8000) << 16
    let exponent = UInt32((half >> 10) & 0x1F)
    let mantissa = UInt32(half & 0x3FF)
    if exponent == 0 {
        // Zero or subnormal: mantissa · 2^-24, exactly representable in float32.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 0x1F {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}
