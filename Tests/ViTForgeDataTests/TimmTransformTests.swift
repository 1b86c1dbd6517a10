import Foundation
import Testing
@testable import ViTForgeData
import ViTForgeResampling

/// `Tests/Fixtures/preprocess`, made once by `Tests/Fixtures/tools/make_preprocess_fixture.py` with timm's
/// `create_transform(**resolve_data_config({}, model=...))`: odd-sized grey/RGB/RGBA PNG and JPEG files and timm's
/// evaluation output for three configurations, stored as the bytes before normalisation.
private let preprocessFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/preprocess")

private struct TransformFixture: Decodable {
    struct Config: Decodable {
        struct Image: Decodable {
            var source: String
            var expected: String
        }
        var name: String
        var side: Int
        var mean: [Double]
        var std: [Double]
        var interpolation: String
        var crop_pct: Double
        var images: [Image]
    }
    var configs: [Config]
}

struct TimmTransformTests {
    /// Decoding may differ from Pillow's by a little on JPEG files (libjpeg settings), so the tolerance is the
    /// issue's: mean absolute difference ≤ 1/255 and none above 4/255, per pixel before normalisation. PNG sources
    /// decode exactly, and the resampling repeats Pillow's fixed-point arithmetic, so they must agree to the byte.
    @Test("the evaluation transform equals timm's on grey, RGB and RGBA, PNG and JPEG, three configurations")
    func matchesTimm() throws {
        let listing = try JSONDecoder().decode(
            TransformFixture.self, from: Data(contentsOf: preprocessFixtures.appendingPathComponent("expected.json")))
        #expect(listing.configs.count == 3)
        for config in listing.configs {
            let filter = try #require(ResamplingFilter(rawValue: config.interpolation))
            let preparation = ImagePreparation(means: config.mean, stds: config.std, channels: 3, side: config.side,
                                               filter: filter, cropPct: config.crop_pct)
            for entry in config.images {
                let source = try DecodedImage(file: preprocessFixtures.appendingPathComponent("source/" + entry.source).path)
                let expected = try DecodedImage(file: preprocessFixtures.appendingPathComponent("expected/" + entry.expected).path)
                #expect(expected.shape == ImageStore.Shape(width: config.side, height: config.side, channels: 3))
                var output = [Float](repeating: .nan, count: preparation.elementsPerImage)
                source.pixels.withUnsafeBufferPointer { pixels in
                    output.withUnsafeMutableBufferPointer { buffer in
                        preparation.prepare(RawImage(pixels: pixels, width: source.shape.width,
                                                     height: source.shape.height, channels: source.shape.channels),
                                            augmentation: .identity, into: buffer.baseAddress!)
                    }
                }
                let plane = config.side * config.side
                var total = 0.0, largest = 0.0
                for channel in 0..<3 {
                    for position in 0..<plane {
                        // Back to bytes: (x · std + mean) · 255, in float64.
                        let ours = (Double(output[channel * plane + position]) * config.std[channel]
                                    + config.mean[channel]) * 255
                        let difference = abs(ours - Double(expected.pixels[position * 3 + channel]))
                        total += difference
                        largest = max(largest, difference)
                    }
                }
                let meanDifference = total / Double(3 * plane)
                let what = "\(config.name) \(entry.source)"
                #expect(meanDifference <= 1, "\(what): mean difference \(meanDifference)")
                #expect(largest <= 4, "\(what): largest difference \(largest)")
                if entry.source.hasSuffix(".png") { #expect(largest < 1e-3, "\(what): PNG differs by \(largest)") }
            }
        }
    }
}

struct RandomResizedCropTests {
    @Test("crops are a pure function of (seed, epoch, index, size), inside the image, within scale and ratio")
    func cropsAreDeterministicAndBounded() throws {
        let recipe = AugmentationRecipe.imageFolderDefault
        let crop = RandomResizedCrop.timmDefault
        var flips = 0, differentAcrossSeeds = 0
        var areas: [Double] = []
        for index in 0..<1999 {
            let (width, height) = (37 + index % 53, 29 + (index * 7) % 61)
            let augmentation = recipe.augmentation(seed: 5, epoch: 2, index: index)
            #expect(augmentation == recipe.augmentation(seed: 5, epoch: 2, index: index))
            #expect(augmentation.dx == 0 && augmentation.dy == 0)
            let draw = try #require(augmentation.crop)
            let region = draw.region(width: width, height: height)
            #expect(region == draw.region(width: width, height: height))
            #expect(region.x >= 0 && region.y >= 0 && region.width >= 1 && region.height >= 1)
            #expect(region.x + region.width <= width && region.y + region.height <= height)
            let area = Double(region.width * region.height) / Double(width * height)
            let ratio = Double(region.width) / Double(region.height)
            // Rounding the sides to whole pixels moves area and ratio a little past the drawn values.
            let slack = 2.0 / Double(min(region.width, region.height))
            #expect(area <= 1 && area >= crop.scale.lowerBound * (1 - slack) * (1 - slack))
            #expect(ratio >= crop.ratio.lowerBound * (1 - slack) && ratio <= crop.ratio.upperBound * (1 + slack))
            areas.append(area)
            if augmentation.flip { flips += 1 }
            if recipe.augmentation(seed: 6, epoch: 2, index: index).crop?.region(width: width, height: height) != region {
                differentAcrossSeeds += 1
            }
        }
        // Uniform area share in [0.08, 1] before rejection: a mean near 0.5, both ends reached; flips near half.
        let meanArea = areas.reduce(0, +) / Double(areas.count)
        #expect(meanArea > 0.4 && meanArea < 0.6, "mean area share \(meanArea)")
        #expect((areas.min() ?? 1) < 0.12 && (areas.max() ?? 0) > 0.95)
        #expect(flips > 900 && flips < 1100, "\(flips) flips of 1999")
        #expect(differentAcrossSeeds > 1900)
    }

    /// torchvision's fallback after ten failed attempts: a 100×10 strip is wider than 4/3, so the crop is the
    /// centred 13×10 (round(10 · 4/3) = 13); a 10×100 strip gives the centred 10×13; with ratio 2–3 a 10×100
    /// strip gives 10×5 at row (100 − 5) // 2 = 47.
    @Test("the fallback crop is the whole image narrowed to the ratio range, centred")
    func fallbackCrop() {
        let impossible = RandomResizedCrop(scale: 1 ... 1, ratio: 2 ... 3)  // never fits a 100×10 image's area
        var random = DataRandom(seed: 1, purpose: .randomCrop, 0, 0)
        #expect(impossible.region(width: 10, height: 100, random: &random) == CropRegion(x: 0, y: 47, width: 10, height: 5))
        let whole = RandomResizedCrop(scale: 1 ... 1)
        #expect(whole.region(width: 100, height: 10, random: &random) == CropRegion(x: 43, y: 0, width: 13, height: 10))
        #expect(whole.region(width: 10, height: 100, random: &random) == CropRegion(x: 0, y: 43, width: 10, height: 13))
    }

    @Test("a crop is resized to the side: the whole-image crop of a same-sized image is the image, flipped by flip")
    func cropPreparation() throws {
        let side = 9
        let dataset = try syntheticDataset(count: 2, side: side, classes: 2)
        let whole = RandomResizedCrop.Draw(crop: RandomResizedCrop(scale: 1 ... 1), key: 3)
        #expect(whole.region(width: side, height: side) == CropRegion(x: 0, y: 0, width: side, height: side))
        let plain = try dataset.image(1)
        #expect(try dataset.image(1, augmentation: ImageAugmentation(dx: 0, dy: 0, flip: false, crop: whole)) == plain)
        let mirrored = try dataset.image(1, augmentation: ImageAugmentation(dx: 0, dy: 0, flip: true, crop: whole))
        for y in 0..<side {
            for x in 0..<side { #expect(mirrored[y * side + x] == plain[y * side + side - 1 - x]) }
        }
        // A smaller crop magnifies: the output differs from the plain image but stays within its value range.
        let small = RandomResizedCrop.Draw(crop: RandomResizedCrop(scale: 0.2 ... 0.3), key: 4)
        let zoomed = try dataset.image(1, augmentation: ImageAugmentation(dx: 0, dy: 0, flip: false, crop: small))
        #expect(zoomed != plain)
        let background = Float(-0.25 / 0.5), top = Float((1 - 0.25) / 0.5)
        #expect(zoomed.allSatisfy { $0 >= background - 1e-6 && $0 <= top + 1e-6 })
    }
}
