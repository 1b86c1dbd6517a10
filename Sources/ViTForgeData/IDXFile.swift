import CZlib
#if canImport(Glibc)
import Glibc
#endif

/// An IDX file of unsigned bytes (the MNIST family's format): a big-endian header `00 00 08 <rank>`, `rank`
/// big-endian u32 dimensions, then the bytes, row-major. Read through zlib's `gzread`, which passes plain files
/// through unchanged, so `.gz` and uncompressed files are read the same way.
public struct IDXFile: Sendable {
    /// Magic numbers of the two kinds ViTForge reads: unsigned bytes of rank 3 (images) and rank 1 (labels).
    public static let imagesMagic: UInt32 = 0x0000_0803
    public static let labelsMagic: UInt32 = 0x0000_0801
    /// Far above any IDX data set (Fashion-MNIST train: 47 MB), and it keeps a hostile header from asking for more
    /// memory than a machine has.
    public static let maximumBytes = 1 << 32
    /// Bytes read per gzread call (and the first allocation).
    static let readChunk = 1 << 20

    public let path: String
    public let dimensions: [Int]
    public let bytes: [UInt8]

    /// Reads `path`, requiring `magic` (and so the rank it encodes); `kind` names the expected kind in errors.
    public init(path: String, magic: UInt32, kind: String) throws {
        self.path = path
        guard let handle = gzopen(path, "rb") else {
            throw DataFileError(file: path, .io("cannot open: " + String(cString: strerror(errno))))
        }
        defer { gzclose(handle) }

        // Grows as bytes arrive, so a header that promises gigabytes costs only what the file really holds.
        func read(_ count: Int) throws -> [UInt8] {
            var buffer: [UInt8] = []
            buffer.reserveCapacity(min(count, Self.readChunk))
            var chunk = [UInt8](repeating: 0, count: min(count, Self.readChunk))
            while buffer.count < count {
                let wanted = UInt32(min(count - buffer.count, chunk.count))
                let got = chunk.withUnsafeMutableBytes { gzread(handle, $0.baseAddress, wanted) }
                if got < 0 { throw DataFileError(file: path, .io("gzip: " + Self.zlibMessage(handle))) }
                if got == 0 { break }
                buffer.append(contentsOf: chunk[..<Int(got)])
            }
            return buffer
        }

        let head = try read(4)
        guard head.count == 4 else { throw DataFileError(file: path, .truncated(expectedBytes: 4, actualBytes: head.count)) }
        let found = Self.bigEndian(head[...])
        guard found == magic else { throw DataFileError(file: path, .wrongMagic(found: found, expected: magic, kind: kind)) }
        let rank = Int(magic & 0xff)
        let header = try read(4 * rank)
        guard header.count == 4 * rank else {
            throw DataFileError(file: path, .truncated(expectedBytes: 4 + 4 * rank, actualBytes: 4 + header.count))
        }
        var dimensions: [Int] = []
        var total = 1
        for axis in 0..<rank {
            let size = Int(Self.bigEndian(header[(4 * axis)..<(4 * axis + 4)]))
            dimensions.append(size)
            let (product, overflow) = total.multipliedReportingOverflow(by: size)
            total = product
            if size == 0 || overflow || total > Self.maximumBytes { throw DataFileError(file: path, .invalidDimensions(dimensions)) }
        }
        let payload = try read(total)
        guard payload.count == total else {
            throw DataFileError(file: path, .truncated(expectedBytes: total, actualBytes: payload.count))
        }
        guard try read(1).isEmpty else { throw DataFileError(file: path, .trailingBytes) }
        self.dimensions = dimensions
        self.bytes = payload
    }

    private static func bigEndian(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    private static func zlibMessage(_ handle: gzFile) -> String {
        var code: Int32 = 0
        guard let message = gzerror(handle, &code) else { return "error \(code)" }
        let text = String(cString: message)
        return text.isEmpty ? "error \(code)" : text
    }
}
