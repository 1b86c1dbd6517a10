import Foundation
import Testing
@testable import ViTForgeData

/// Streaming an ImageFolder (files listed at start, each batch decoded by worker threads) against decoding the whole
/// folder into memory first; files from cameras and scanners against Pillow; what a run skips and reports.
struct ImageStreamTests {
    /// Classes a, b, c: RGB JPEGs big enough for DCT scaling (odd sizes), grey JPEGs, RGB and grey PNGs; 29 images.
    static func makeFolder(_ folder: ScratchFolder, root: String = "") throws {
        var random = DataRandom(seed: 5, purpose: .order, 1, 2)
        func noise(_ count: Int) -> [UInt8] {
            (0..<count).map { index in UInt8(truncatingIfNeeded: Int(random.below(64)) + (index * 7) % 192) }
        }
        for index in 0..<29 {
            let label = ["a", "b", "c"][index % 3]
            let (width, height) = (37 + 11 * (index % 5), 29 + 13 * (index % 4))
            switch index % 4 {
            case 0: try folder.jpeg(root + "\(label)/\(index).jpg", width: width, height: height, channels: 3,
                                    pixels: noise(width * height * 3), quality: 90)
            case 1: try folder.jpeg(root + "\(label)/\(index).jpeg", width: width, height: height, channels: 1,
                                    pixels: noise(width * height), quality: 85)
            case 2: try folder.png(root + "\(label)/\(index).png", width: width, height: height, channels: 3,
                                   pixels: noise(width * height * 3))
            default: try folder.png(root + "\(label)/sub/\(index).PNG", width: width, height: height, channels: 1,
                                    pixels: noise(width * height))
            }
        }
    }

    static func options(cache: Bool, warnings: WarningLines = WarningLines()) -> DatasetOptions {
        DatasetOptions(channels: 3, side: 9, cacheImages: cache, warn: { warnings.append($0) })
    }

    @Test("stream == whole-folder decode: images, labels, order, augmentation, for worker counts 1 and 2",
          arguments: [1, 2])
    func streamMatchesWholeDecode(workers: Int) throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder)
        let streamed = try Dataset.load(folder.path, options: Self.options(cache: false)).training
        let decoded = try Dataset.load(folder.path, options: Self.options(cache: true)).training
        #expect(streamed.store.streams && !decoded.store.streams)
        #expect(streamed.store.pixels.isEmpty && decoded.store.pixels.count == decoded.store.decodedBytes(scaling: decoded.decodeScaling))
        #expect(streamed.decodeScaling == .reduced(shorterSide: 9))
        // The RGB JPEGs are big enough to be decoded at 1/4 (shorter side 29 … 68 against 9 needed).
        #expect(Set(streamed.store.shapes.indices.map { streamed.store.denominator(of: $0, streamed.decodeScaling) })
            .isSuperset(of: [1, 2, 4]))

        let recipe = AugmentationRecipe(maximumShift: 2, flipProbability: 0.5)
        let stream = try BatchLoader(dataset: streamed, batchSize: 4, seed: 3, augmentation: recipe, workers: workers)
        let whole = try BatchLoader(dataset: decoded, batchSize: 4, seed: 3, augmentation: recipe, prefetch: false,
                                    workers: 1)
        #expect(stream.batchesPerEpoch == 8)
        for epoch in 0..<2 {
            for index in 0..<stream.batchesPerEpoch {
                let got = try stream.batch(epoch: epoch, index: index)
                let expected = try whole.batch(epoch: epoch, index: index)
                #expect(got.images == expected.images && got.labels == expected.labels, "epoch \(epoch) batch \(index)")
            }
        }
        // And against an independent decode + transform of the first batch's files.
        let first = try stream.batch(epoch: 0, index: 0)
        let order = stream.order(epoch: 0)
        for slot in 0..<4 {
            let member = streamed.members[order[slot]]
            let image = try DecodedImage(file: streamed.store.name(of: member),
                                         scaleDenominator: streamed.store.denominator(of: member, streamed.decodeScaling))
            var expected = [Float](repeating: 0, count: streamed.elementsPerImage)
            image.pixels.withUnsafeBufferPointer { pixels in
                streamed.preparation.prepare(RawImage(pixels: pixels, width: image.shape.width,
                                                      height: image.shape.height, channels: image.shape.channels),
                                             augmentation: stream.augmentation(epoch: 0, position: order[slot]),
                                             into: &expected)
            }
            #expect(Array(first.images[(slot * expected.count)..<((slot + 1) * expected.count)]) == expected)
            #expect(first.labels[slot] == streamed.labels[order[slot]])
        }
    }

    @Test("a resumed loader asked for a batch mid-epoch gets the uninterrupted run's batch, bit for bit")
    func resumeMidEpoch() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder)
        let dataset = try Dataset.load(folder.path, options: Self.options(cache: false)).training
        let recipe = AugmentationRecipe(maximumShift: 1, flipProbability: 0.5)
        let running = try BatchLoader(dataset: dataset, batchSize: 5, seed: 8, augmentation: recipe, workers: 2)
        var uninterrupted: [[Int]: [Float]] = [:]
        for epoch in 0..<2 {
            for index in 0..<running.batchesPerEpoch { uninterrupted[[epoch, index]] = try running.batch(epoch: epoch, index: index).images }
        }
        let resumed = try BatchLoader(dataset: dataset, batchSize: 5, seed: 8, augmentation: recipe, workers: 2)
        for index in 3..<resumed.batchesPerEpoch {
            #expect(try resumed.batch(epoch: 1, index: index).images == uninterrupted[[1, index]], "batch \(index)")
        }
    }

    @Test("the shares of a streamed batch for 1 to 3 ranks put together are the whole batch")
    func sharesOnAFolder() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder)
        let dataset = try Dataset.load(folder.path, options: Self.options(cache: false)).training
        let recipe = AugmentationRecipe(maximumShift: 1, flipProbability: 0.5)
        let whole = try BatchLoader(dataset: dataset, batchSize: 7, seed: 2, augmentation: recipe, prefetch: false)
        let elements = whole.imageElements
        for parts in 1...3 {
            let loaders = try (0..<parts).map { _ in
                try BatchLoader(dataset: dataset, batchSize: 7, seed: 2, augmentation: recipe, workers: 2)
            }
            for index in 0..<whole.batchesPerEpoch {
                let expected = try whole.batch(epoch: 1, index: index)
                var images: [Float] = [], labels: [Int32] = []
                for (part, loader) in loaders.enumerated() {
                    var shareImages = [Float](repeating: .nan, count: 7 * elements)
                    var shareLabels = [Int32](repeating: -1, count: 7)
                    let count = try shareImages.withUnsafeMutableBufferPointer { imageBuffer in
                        try shareLabels.withUnsafeMutableBufferPointer { labelBuffer in
                            try loader.fill(epoch: 1, index: index, part: part, of: parts, images: imageBuffer,
                                            labels: labelBuffer)
                        }
                    }
                    images += shareImages[..<(count.shard * elements)]
                    labels += shareLabels[..<count.shard]
                }
                #expect(images == expected.images && labels == expected.labels, "\(parts) ranks, batch \(index)")
            }
        }
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/decode").path

    @Test("CMYK and YCCK JPEGs, 16-bit, palette and alpha PNGs decode as Pillow's convert() does (within 2/255)",
          arguments: [("cmyk.jpg", "cmyk-pillow.png"), ("ycck.jpg", "ycck-pillow.png"), ("rgb16.png", "rgb16-pillow.png"),
                      ("palette.png", "palette-pillow.png"), ("rgba.png", "rgba-pillow.png"),
                      ("grey-alpha.png", "grey-alpha-pillow.png")])
    func matchesPillow(file: String, reference: String) throws {
        let image = try DecodedImage(file: Self.fixtures + "/" + file)
        // The references are 8-bit PNGs without alpha, which the decoder reads exactly.
        let expected = try DecodedImage(file: Self.fixtures + "/" + reference)
        #expect(image.shape == expected.shape)
        let largest = zip(image.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }.max() ?? .max
        #expect(largest <= 2, "\(file): largest difference \(largest)/255")
        #expect(Set(image.pixels).count > 20, "\(file): too few distinct values to prove anything")
        let header = try ImageFolder.probe(Self.fixtures + "/" + file)
        #expect(header.shape == image.shape && header.isJPEG == file.hasSuffix(".jpg"))
    }

    @Test("bad files: skipped once each, counted in the summary; other extensions named once; --strict-data fails")
    func skippedFiles() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder)
        // A header that reads but a body cut short: found only when a batch decodes it.
        let whole = try folder.bytes("a/0.jpg")
        try folder.write("a/0b-cut.jpg", Array(whole.prefix(whole.count * 2 / 3)))
        try folder.write("b/garbage.jpg", [0xFF, 0xD8, 0xFF, 0xE0] + (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37) })
        try folder.write("c/empty.png", [])
        try folder.write("c/notes.txt", Array("text".utf8))
        try folder.write("a/photo.webp", Array("RIFF....WEBP".utf8))
        try folder.write("b/scan.bmp", Array("BM".utf8))

        let warnings = WarningLines()
        let splits = try Dataset.load(folder.path, options: Self.options(cache: false, warnings: warnings))
        #expect(splits.training.count == 30)  // 29 good + the cut one, whose header reads
        let notes = warnings.lines.filter { $0.hasPrefix("note:") }
        #expect(notes.count == 1 && notes.first?.contains("left out 3 files that are not PNG or JPEG (.bmp, .txt, .webp)") == true,
                "\(warnings.lines)")
        #expect(warnings.lines.filter { $0.hasPrefix("warning:") }.count == 2)

        let loader = try BatchLoader(dataset: splits.training, batchSize: 6, seed: 4, workers: 2)
        for epoch in 0..<2 {
            for index in 0..<loader.batchesPerEpoch { #expect(try loader.batch(epoch: epoch, index: index).labels.count <= 6) }
        }
        let skipped = warnings.lines.filter { $0.hasPrefix("warning:") }
        #expect(skipped.count == 3, "each bad file warned about once: \(skipped)")
        #expect(skipped.contains { $0.contains(folder.path + "/a/0b-cut.jpg") && $0.contains("truncated") })
        // 32 image files listed (29 + cut + garbage + empty); the first skipped in listing order is b/garbage.jpg.
        let summary = try #require(splits.skippedSummary)
        #expect(summary.hasPrefix("skipped 3 of 32 image files; first: " + folder.path + "/b/garbage.jpg: corrupt image"),
                "\(summary)")

        // The cut file's slot holds the next position's image and label, the same with 1 worker or a fresh loader.
        let cut = try #require((0..<splits.training.count).first { splits.training.source(of: $0).hasSuffix("0b-cut.jpg") })
        let next = (cut + 1) % splits.training.count
        #expect(try splits.training.image(cut) == splits.training.image(next))
        var output = [Float](repeating: 0, count: splits.training.elementsPerImage)
        #expect(try splits.training.writeImage(cut, augmentation: .identity, into: &output) == splits.training.labels[next])

        var strict = Self.options(cache: false)
        strict.onCorrupt = .fail
        #expect { try Dataset.load(folder.path, options: strict) } throws: { error in
            "\(error)".hasPrefix(folder.path + "/b/garbage.jpg: corrupt image")
        }
        try FileManager.default.removeItem(atPath: folder.path + "/b/garbage.jpg")
        try FileManager.default.removeItem(atPath: folder.path + "/c/empty.png")
        let strictSplits = try Dataset.load(folder.path, options: strict)
        let strictLoader = try BatchLoader(dataset: strictSplits.training, batchSize: 30, seed: 4, prefetch: false)
        #expect { try strictLoader.batch(epoch: 0, index: 0) } throws: { error in
            "\(error)".hasPrefix(folder.path + "/a/0b-cut.jpg: corrupt image: JPEG: truncated")
        }
    }

    @Test("an empty class folder: an error when training has none of the class, a warning when val or test is empty")
    func emptyClassFolders() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder, root: "train/")
        try folder.png("val/a/v.png", width: 3, height: 2, channels: 3, pixels: ImageFolderTests.rgbPixels)
        try folder.png("val/c/v.png", width: 3, height: 2, channels: 3, pixels: ImageFolderTests.rgbPixels)
        try FileManager.default.createDirectory(atPath: folder.path + "/val/b", withIntermediateDirectories: true)
        let warnings = WarningLines()
        let splits = try Dataset.load(folder.path, options: Self.options(cache: false, warnings: warnings))
        #expect(splits.validation?.count == 2)
        #expect(warnings.lines == ["warning: \(folder.path)/val/b: class folder holds no readable PNG or JPEG file "
                                   + "(\(folder.path)/train has images of the class)"])

        try FileManager.default.createDirectory(atPath: folder.path + "/train/d/nested", withIntermediateDirectories: true)
        try folder.write("train/d/readme.txt", Array("no images here".utf8))
        #expect { try Dataset.load(folder.path, options: Self.options(cache: false)) } throws: { error in
            "\(error)" == "\(folder.path)/train/d: class folder holds no readable PNG or JPEG file: class 3 would have no "
                + "images to train on"
        }
        // Not an error when --classes leaves the empty class out.
        var subset = Self.options(cache: false)
        subset.classes = [0, 2]
        #expect(try Dataset.load(folder.path, options: subset).training.count == 19)
    }

    @Test("--cache-images: used when the decoded images fit the budget, otherwise a note and streaming")
    func cacheBudget() throws {
        let folder = try ScratchFolder()
        defer { folder.remove() }
        try Self.makeFolder(folder)
        let warnings = WarningLines()
        var options = Self.options(cache: true, warnings: warnings)
        options.cacheBudget = 1000
        let streamed = try Dataset.load(folder.path, options: options)
        #expect(streamed.training.store.streams)
        #expect(warnings.lines.count == 1 && warnings.lines[0].contains("more than the 1 MB allowed"), "\(warnings.lines)")
        options.cacheBudget = 1 << 30
        #expect(try !Dataset.load(folder.path, options: options).training.store.streams)
    }
}
