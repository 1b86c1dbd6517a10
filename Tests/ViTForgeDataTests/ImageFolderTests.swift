import CImageDecode
import Foundation
import Testing
@testable import ViTForgeData

/// A fresh folder under the system's temporary folder, removed by `remove()`.
struct ScratchFolder {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "vitforge-data-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Creates the folders on the way to `relative` and returns the full path.
    func file(_ relative: String) throws -> String {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        return full
    }

    /// Writes [height, width, channels] bytes as a PNG.
    func png(_ relative: String, width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        let full = try file(relative)
        var message = [CChar](repeating: 0, count: 256)
        let status = vf_encode_png(full, pixels, Int32(width), Int32(height), Int32(channels), &message, message.count)
        #expect(status == 0, "\(String(cString: message))")
    }

    /// Writes [height, width, channels] bytes as a JPEG at `quality`.
    func jpeg(_ relative: String, width: Int, height: Int, channels: Int, pixels: [UInt8], quality: Int = 100) throws {
        let full = try file(relative)
        var message = [CChar](repeating: 0, count: 256)
        let status = vf_encode_jpeg(full, pixels, Int32(width), Int32(height), Int32(channels), Int32(quality),
                                    &message, message.count)
        #expect(status == 0, "\(String(cString: message))")
    }

    func bytes(_ relative: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + "/" + relative)))
    }

    func write(_ relative: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: try file(relative)))
    }
}

/// Collects warning lines from the loader.
final class WarningLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.withLock { stored } }
    func append(_ line: String) { lock.withLock { stored.append(line) } }
}

struct ImageFolderTests {
    /// 3×2 RGB, row-major: distinct values so a transposed or channel-swapped decode shows.
    static let rgbPixels: [UInt8] = [255, 0, 0,  0, 255, 0,  0, 0, 255,
                                     10, 20, 30,  40, 50, 60,  70, 80, 90]

    /// Classes `Dog` (one constant grey JPEG), `ant` (a grey PNG in a nested folder, and a text file to ignore),
    /// `cat` (the RGB PNG and a constant RGB JPEG). Python sorts upper case first: Dog, ant, cat.
    static func makeFolder(_ folder: ScratchFolder, root: String = "") throws {
        try folder.png(root + "cat/a.png", width: 3, height: 2, channels: 3, pixels: rgbPixels)
        try folder.jpeg(root + "cat/b.JPG", width: 16, height: 8, channels: 3,
                        pixels: Array([UInt8]([200, 100, 50]).repeated(16 * 8)))
        try folder.jpeg(root + "Dog/x.jpeg", width: 8, height: 8, channels: 1, pixels: Array(repeating: 77, count: 64))
        try folder.png(root + "ant/nested/c.PNG", width: 2, height: 2, channels: 1, pixels: [0, 64, 128, 255])
        try folder.write(root + "ant/readme.txt", Array("not an image".utf8))
    }

    @Test("classes from sorted folder names, labels, PNG exact and JPEG close pixel values")
    func loadsImageFolder() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder)
        let notes = WarningLines()
        let store = try ImageFolder.load(folder.path, onCorrupt: .fail, warn: { notes.append($0) })
        // readme.txt is left out, and named once.
        #expect(notes.lines == ["note: \(folder.path): left out 1 file that is not PNG or JPEG (.txt); first: "
                                + "\(folder.path)/ant/readme.txt"])
        #expect(store.classNames == ["Dog", "ant", "cat"])
        #expect(store.count == 4)
        let byFile = Dictionary(uniqueKeysWithValues: (0..<store.count).map {
            ((store.name(of: $0) as NSString).lastPathComponent, $0)
        })
        #expect(Set(byFile.keys) == ["a.png", "b.JPG", "x.jpeg", "c.PNG"])
        let expectedLabels: [String: Int32] = ["x.jpeg": 0, "c.PNG": 1, "a.png": 2, "b.JPG": 2]
        for (file, label) in expectedLabels { #expect(store.labels[byFile[file] ?? -1] == label, "\(file)") }

        let rgb = byFile["a.png"] ?? -1
        #expect(store.shapes[rgb] == .init(width: 3, height: 2, channels: 3))
        try store.withImage(rgb) { #expect(Array($0.pixels) == Self.rgbPixels) }
        let grey = byFile["c.PNG"] ?? -1
        #expect(store.shapes[grey] == .init(width: 2, height: 2, channels: 1))
        try store.withImage(grey) { #expect(Array($0.pixels) == [0, 64, 128, 255]) }
        // Quality 100 on a constant image: the DCT round trip is within a grey level or two.
        let greyJPEG = byFile["x.jpeg"] ?? -1
        #expect(store.shapes[greyJPEG] == .init(width: 8, height: 8, channels: 1))
        try store.withImage(greyJPEG) { image in #expect(image.pixels.allSatisfy { abs(Int($0) - 77) <= 1 }) }
        let rgbJPEG = byFile["b.JPG"] ?? -1
        #expect(store.shapes[rgbJPEG] == .init(width: 16, height: 8, channels: 3))
        try store.withImage(rgbJPEG) { image in
            for (position, value) in image.pixels.enumerated() {
                let expected = [200, 100, 50][position % 3]
                #expect(abs(Int(value) - expected) <= 2, "channel \(position % 3): \(value)")
            }
        }
    }

    @Test("corrupt images (truncated PNG, garbage JPEG, wrong signature) are named, then skipped or fatal by flag",
          arguments: CorruptImagePolicy.allCases)
    func corruptImages(policy: CorruptImagePolicy) throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder)
        let whole = try folder.bytes("cat/a.png")
        try folder.write("cat/truncated.png", Array(whole.prefix(whole.count / 2)))
        try folder.write("Dog/garbage.jpg", [0xFF, 0xD8, 0xFF, 0xE0] + (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 37) })
        let jpeg = try folder.bytes("Dog/x.jpeg")
        try folder.write("Dog/short.jpg", Array(jpeg.prefix(jpeg.count * 2 / 3)))
        try folder.write("ant/text.png", Array("plain text, not a PNG".utf8))
        let corrupt = ["cat/truncated.png", "Dog/garbage.jpg", "Dog/short.jpg", "ant/text.png"]

        let warnings = WarningLines()
        switch policy {
        case .skip:
            let store = try ImageFolder.load(folder.path, onCorrupt: .skip, warn: { warnings.append($0) })
            #expect(store.count == 4)
            #expect(warnings.lines.filter { $0.hasPrefix("warning:") }.count == corrupt.count)
            for name in corrupt {
                let line = warnings.lines.first { $0.contains(folder.path + "/" + name) }
                #expect(line != nil, "no warning names \(name): \(warnings.lines)")
                #expect(line?.contains("corrupt image") == true && line?.contains("\n") == false)
            }
        case .fail:
            do {
                _ = try ImageFolder.load(folder.path, onCorrupt: .fail, warn: { warnings.append($0) })
                Issue.record("loading a folder with corrupt images succeeded")
            } catch let error as DataFileError {
                // Files are read in class order (Dog first), then by name: garbage.jpg is the first corrupt one.
                #expect(error.file == folder.path + "/Dog/garbage.jpg")
                #expect(error.description.hasPrefix(folder.path + "/Dog/garbage.jpg: corrupt image: JPEG"))
                #expect(!error.description.contains("\n"))
            }
        }
    }

    @Test("each corrupt kind alone gives its decoder's reason")
    func corruptReasons() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try folder.png("good.png", width: 5, height: 3, channels: 1, pixels: Array(repeating: 9, count: 15))
        let whole = try folder.bytes("good.png")
        try folder.write("cut.png", Array(whole.prefix(whole.count - 20)))
        try folder.write("empty.jpg", [])
        // Noise makes the scan data most of the file, so the cut lands inside it: libjpeg would fill the rest grey.
        var random = DataRandom(seed: 1, purpose: .order, 0, 0)
        let noise = (0..<(48 * 48)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        try folder.jpeg("noise.jpg", width: 48, height: 48, channels: 1, pixels: noise, quality: 90)
        let jpeg = try folder.bytes("noise.jpg")
        try folder.write("cut.jpg", Array(jpeg.prefix(jpeg.count * 3 / 4)))
        try folder.png("noise.png", width: 48, height: 48, channels: 1, pixels: noise)
        let png = try folder.bytes("noise.png")
        try folder.write("cut-data.png", Array(png.prefix(png.count * 3 / 4)))
        _ = try DecodedImage(file: folder.path + "/noise.jpg")
        #expect(try DecodedImage(file: folder.path + "/noise.png").pixels == noise)
        let cases: [(String, String)] = [("cut.png", "PNG:"), ("empty.jpg", "neither a PNG nor a JPEG"),
                                         ("cut.jpg", "JPEG: truncated file (premature end of data)"),
                                         ("cut-data.png", "PNG: truncated file")]
        for (name, reason) in cases {
            #expect(throws: DataFileError.self) { try DecodedImage(file: folder.path + "/" + name) }
            do { _ = try DecodedImage(file: folder.path + "/" + name) } catch {
                #expect("\(error)".contains(reason), "\(error)")
            }
        }
        #expect(throws: DataFileError.self) { try DecodedImage(file: folder.path + "/missing.png") }
    }

    @Test("an ImageFolder with train/val splits: val takes train's classes; channels and ImageNet statistics")
    func splitFolders() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder, root: "train/")
        try folder.png("val/cat/v.png", width: 3, height: 2, channels: 3, pixels: Self.rgbPixels)
        #expect(try DataSource.resolve(folder.path) == .imageFolderSplits(folder.path))
        #expect(try DataSource.resolve(folder.path + "/train") == .imageFolder(folder.path + "/train"))

        let splits = try Dataset.load(folder.path, options: DatasetOptions(channels: 3, side: 3))
        #expect(splits.training.count == 4 && splits.test == nil)
        let validation = try #require(splits.validation)
        #expect(validation.count == 1 && validation.label(0) == 2 && validation.classNames == ["Dog", "ant", "cat"])
        #expect(validation.preparation.means == ImagePreparation.imageNetMeans)

        #expect(validation.preparation.cropPct == 0.875 && validation.preparation.filter == .bicubic)

        // At side 2 without a crop share the 3×2 image keeps its size and the centre crop takes columns 0 and 1
        // (torchvision rounds the half-pixel margin to even, 0): the stored pixels, normalised.
        let uncropped = try Dataset.load(folder.path, options: DatasetOptions(channels: 3, side: 2, cropPct: 1))
        let image = try #require(uncropped.validation).image(0)
        let means = ImagePreparation.imageNetMeans, stds = ImagePreparation.imageNetStds
        for channel in 0..<3 {
            for y in 0..<2 {
                for x in 0..<2 {
                    let stored = Double(Self.rgbPixels[3 * (3 * y + x) + channel])
                    let expected = (stored / 255 - means[channel]) / stds[channel]
                    #expect(abs(Double(image[channel * 4 + 2 * y + x]) - expected) < 1e-5)
                }
            }
        }

        // A one-channel model sees the luminance (Pillow's convert("L"): 76 for pure red), with timm's
        // one-channel ImageNet statistics.
        let grey = try Dataset.load(folder.path, options: DatasetOptions(channels: 1, side: 2, cropPct: 1)).validation
        let greyImage = try #require(grey).image(0)
        let expected = (76 / 255 - ImagePreparation.imageNetGreyMean) / ImagePreparation.imageNetGreyStd
        #expect(abs(Double(greyImage[0]) - expected) < 1e-5)

        // A grey image feeds a three-channel model as three equal planes.
        let ant = splits.training
        let antPosition = try #require((0..<ant.count).first { ant.label($0) == 1 })
        let antImage = try ant.image(antPosition)
        for position in 0..<9 {
            let first = (Double(antImage[position]) * stds[0] + means[0])
            #expect(abs((Double(antImage[9 + position]) * stds[1] + means[1]) - first) < 1e-5)
            #expect(abs((Double(antImage[18 + position]) * stds[2] + means[2]) - first) < 1e-5)
        }
    }

    @Test("a stray class folder in val, an empty folder, a bad --mean count: one-line errors")
    func folderErrors() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder, root: "train/")
        try folder.png("val/zebra/v.png", width: 1, height: 1, channels: 1, pixels: [1])
        #expect(throws: DataFileError.self) { try Dataset.load(folder.path, options: DatasetOptions(channels: 3, side: 4)) }
        try FileManager.default.removeItem(atPath: folder.path + "/val")
        #expect(throws: DataFileError.self) {
            try Dataset.load(folder.path, options: DatasetOptions(channels: 3, side: 4, means: [0.1, 0.2]))
        }
        let empty = try ScratchFolder()
        defer { empty.remove() }
        #expect(throws: DataFileError.self) { try ImageFolder.load(empty.path, onCorrupt: .fail, warn: { _ in }) }
    }
}

extension Array {
    func repeated(_ times: Int) -> [Element] { (0..<times).flatMap { _ in self } }
}
