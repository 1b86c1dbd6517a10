import CImageDecode
import Foundation
import Testing

/// Writes small ImageFolders for the journey tests: odd sizes, grey and RGB, PNG and JPEG, one pattern per class
/// (a class's brightness and stripe direction), so that a few steps of training have something to see.
enum ImageFolderMaker {
    /// `root/SPLIT/CLASS/N.png|jpg` for each split and class, `perClass[split]` images each. Image `n` is
    /// (17 + 2n) × (13 + 3n) pixels, grey when `n` is odd, JPEG when `n % 3 == 2`. Returns the image paths.
    @discardableResult
    static func make(_ root: String, classes: [String], perClass: [String: Int]) throws -> [String] {
        var written: [String] = []
        for (split, count) in perClass.sorted(by: { $0.key < $1.key }) {
            for (label, name) in classes.enumerated() {
                let folder = split.isEmpty ? root + "/" + name : root + "/" + split + "/" + name
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for n in 0 ..< count {
                    let width = 17 + 2 * n, height = 13 + 3 * n, channels = n % 2 == 1 ? 1 : 3
                    var pixels = [UInt8](repeating: 0, count: width * height * channels)
                    for y in 0 ..< height {
                        for x in 0 ..< width {
                            let stripe = (label % 2 == 0 ? x : y) / 3 % 2 == 0
                            let base = 40 + 70 * label + (stripe ? 30 : 0)
                            for c in 0 ..< channels {
                                pixels[(y * width + x) * channels + c] = UInt8(min(255, base + 11 * c + n))
                            }
                        }
                    }
                    let jpeg = n % 3 == 2
                    let path = folder + "/\(n)." + (jpeg ? "jpg" : "png")
                    var message = [CChar](repeating: 0, count: 256)
                    let status = jpeg
                        ? vf_encode_jpeg(path, pixels, Int32(width), Int32(height), Int32(channels), 90, &message,
                                         message.count)
                        : vf_encode_png(path, pixels, Int32(width), Int32(height), Int32(channels), &message,
                                        message.count)
                    #expect(status == 0, "\(String(cString: message))")
                    written.append(path)
                }
            }
        }
        return written
    }
}

/// A JSON file as a dictionary.
func jsonObject(_ path: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
}
