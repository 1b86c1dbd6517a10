import Foundation
import Testing
@testable import ViTForgeData

/// Headers that promise more than any data set holds: one-line errors before the memory they ask for is allocated.
struct ReaderLimitTests {
    /// CRC-32 (zlib's polynomial), for patching a PNG chunk.
    static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func bigEndian(_ value: Int, bytes: Int) -> [UInt8] {
        (0..<bytes).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    @Test("a PNG and a JPEG whose headers claim 12000×9000 pixels (under the side limit, over 64 Mpixel) are refused",
          arguments: ["png", "jpg"])
    func pixelLimit(format: String) throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        let pixels = (0..<(5 * 3 * 3)).map { UInt8($0 * 5) }
        if format == "png" {
            try folder.png("big.png", width: 5, height: 3, channels: 3, pixels: pixels)
        } else {
            try folder.jpeg("big.jpg", width: 5, height: 3, channels: 3, pixels: pixels)
        }
        let path = folder.path + "/big." + format
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        if format == "png" {
            // IHDR's data starts at byte 16: width, height (4 bytes each, big-endian); its CRC follows the 13 bytes.
            bytes.replaceSubrange(16..<24, with: Self.bigEndian(12000, bytes: 4) + Self.bigEndian(9000, bytes: 4))
            bytes.replaceSubrange(29..<33, with: Self.bigEndian(Int(Self.crc32(bytes[12..<29])), bytes: 4))
        } else {
            // SOF0 (FF C0): length (2), precision (1), height (2), width (2).
            let sof = try #require((0..<bytes.count - 1).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
            bytes.replaceSubrange(sof + 5..<sof + 9, with: Self.bigEndian(9000, bytes: 2) + Self.bigEndian(12000, bytes: 2))
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try DecodedImage(file: path)
        } throws: { error in
            "\(error)" == "\(path): corrupt image: image size 12000x9000 is beyond the limit of 67108864 pixels"
        }
    }

    @Test("IDX dimensions whose product overflows, or exceeds 4 GiB, are invalid dimensions")
    func idxDimensionOverflow() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        // The error lists the dimensions up to the one that broke the limit. The first product wrapped to a
        // negative Int before the overflow was checked, and the reader then trapped allocating a negative count.
        for (dimensions, named) in [([0xFFFF_FFFF, 0xFFFF_FFFF, 3], 2), ([65536, 65536, 2], 3)] {
            let path = try folder.file("images-\(dimensions[0])-\(dimensions[2])")
            let header: [UInt8] = [0, 0, 8, 3] + dimensions.flatMap { Self.bigEndian($0, bytes: 4) }
            try Data(header + [1, 2, 3]).write(to: URL(fileURLWithPath: path))
            #expect(throws: DataFileError(file: path, .invalidDimensions(Array(dimensions.prefix(named))))) {
                try IDXFile(path: path, magic: IDXFile.imagesMagic, kind: "images")
            }
        }
    }

    @Test("an IDX header promising 3.6 GB over 10 bytes is a truncation error; the reader allocates as bytes arrive")
    func idxHugePromise() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        let path = try folder.file("images")
        let header: [UInt8] = [0, 0, 8, 3] + [60000, 240, 250].flatMap { Self.bigEndian($0, bytes: 4) }
        try Data(header + Array(repeating: 7, count: 10)).write(to: URL(fileURLWithPath: path))
        #expect(throws: DataFileError(file: path, .truncated(expectedBytes: 3_600_000_000, actualBytes: 10))) {
            try IDXFile(path: path, magic: IDXFile.imagesMagic, kind: "images")
        }
    }
}
