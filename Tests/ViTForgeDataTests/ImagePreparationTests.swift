import Testing
@testable import ViTForgeData
import ViTForgeResampling

struct ImagePreparationTests {
    /// Pillow's `Image.resize((4, 1), BILINEAR)` of the row [0, 255] reads [0, 64, 191, 255]: for upsampling the
    /// triangle filter keeps support 1 and the taps are those of align_corners=False, clamped to the image.
    @Test("bilinear upsampling weights follow Pillow (align_corners=False taps)")
    func bilinearUpsamplingWeights() {
        let source: [Double] = [0, 255]
        let weights = ResamplingWeights(filter: .bilinear, inputCount: 2, outputCount: 4)
        let values = (0..<4).map { x in
            weights.weights[x].enumerated().reduce(0.0) { $0 + $1.element * source[weights.first[x] + $1.offset] }
        }
        #expect(values == [0, 63.75, 191.25, 255])
        let same = ResamplingWeights(filter: .bicubic, inputCount: 7, outputCount: 7)
        for x in 0..<7 {
            let taps = same.weights[x]
            #expect(taps.enumerated().allSatisfy { same.first[x] + $0.offset == x ? $0.element == 1 : $0.element == 0 })
        }
    }

    /// Shrinking by 3 widens the bicubic filter to ±6 input samples (antialiasing), the weights still summing to 1.
    @Test("downscaling widens the filter by the scale, weights sum to one")
    func downscalingWidensFilter() {
        let weights = ResamplingWeights(filter: .bicubic, inputCount: 63, outputCount: 21)
        let middle = weights.weights[10]
        #expect(middle.count == 12)
        #expect(abs(middle.reduce(0, +) - 1) < 1e-12)
        #expect(weights.weights.allSatisfy { abs($0.reduce(0, +) - 1) < 1e-12 })
    }

    @Test("normalisation, identity size, grey channel repeated for three-channel models")
    func preparesNormalisedImages() {
        let pixels: [UInt8] = [0, 255, 51, 102, 0, 0, 0, 0]  // two 2×2 images
        let images = LabeledImages(count: 2, height: 2, width: 2, pixels: pixels, labels: [3, 1])
        let preparation = ImagePreparation(mean: 0.5, std: 0.25, channels: 3, side: 2)
        var output = [Float](repeating: .nan, count: 2 * preparation.elementsPerImage)
        output.withUnsafeMutableBufferPointer { preparation.prepare(images, indices: [0, 1][...], into: $0) }
        let expected: [Float] = [-2, 2, -1.2, -0.4]
        for channel in 0..<3 {
            for position in 0..<4 {
                #expect(abs(output[channel * 4 + position] - expected[position]) < 1e-5)
                #expect(abs(output[12 + channel * 4 + position] - -2) < 1e-5)
            }
        }
    }

    @Test("resizing 2×2 to 4×4 bilinearly gives Pillow's bytes, the same in every row")
    func resizesBilinearly() {
        let images = LabeledImages(count: 1, height: 2, width: 2, pixels: [0, 255, 0, 255], labels: [0])
        let preparation = ImagePreparation(mean: 0, std: 1, channels: 1, side: 4, filter: .bilinear)
        var output = [Float](repeating: .nan, count: 16)
        output.withUnsafeMutableBufferPointer { preparation.prepare(images, indices: [0][...], into: $0) }
        // Pillow rounds each pass to bytes: 63.75 → 64, 191.25 → 191.
        let expected: [Float] = [0, 64 / 255, 191 / 255, 1]
        for row in 0..<4 {
            let values = Array(output[(row * 4)..<(row * 4 + 4)])
            #expect(zip(values, expected).allSatisfy { abs($0 - $1) < 1e-6 }, "\(values)")
        }
    }

    @Test("class subsets keep file order and the tally counts per class")
    func subsetsAndTally() {
        let images = LabeledImages(count: 5, height: 1, width: 1, pixels: [0, 0, 0, 0, 0], labels: [2, 0, 2, 1, 0])
        #expect(images.indices(ofClasses: [0, 2]) == [0, 1, 2, 4])
        #expect(images.classCount == 3)
        var tally = ClassificationTally(classes: 3)
        let logits: [Float] = [0, 0, 1,  1, 0, 0,  1, 0, 0]
        logits.withUnsafeBufferPointer { tally.record(labels: [2, 0, 2], logits: $0, logitsPerImage: 3) }
        #expect(tally.images == 3 && tally.correctImages == 2)
        #expect(tally.accuracy(ofClass: 2) == 0.5)
        #expect(tally.accuracy(ofClass: 1) == nil)
    }
}
