import Testing
@testable import ViTForgeData

struct ImagePreparationTests {
    /// PyTorch: `F.interpolate(torch.tensor([[[[0., 255.]]]]), size=(1, 4), mode="bilinear", align_corners=False)`
    /// gives [0, 63.75, 191.25, 255]: source = (x + 0.5)/2 − 0.5, clamped at 0.
    @Test("bilinear resampling follows align_corners=False")
    func resamplingMatchesPyTorch() {
        let source: [Float] = [0, 255]
        let values = ImagePreparation.resampling(from: 2, to: 4).map {
            source[$0.low] * (1 - $0.weight) + source[$0.high] * $0.weight
        }
        #expect(values == [0, 63.75, 191.25, 255])
        #expect(ImagePreparation.resampling(from: 7, to: 7).enumerated().allSatisfy { $1.low == $0 && $1.weight == 0 })
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

    @Test("resizing 2×2 to 4×4 keeps a constant image constant and the corners exact")
    func resizesBilinearly() {
        let images = LabeledImages(count: 1, height: 2, width: 2, pixels: [0, 255, 0, 255], labels: [0])
        let preparation = ImagePreparation(mean: 0, std: 1, channels: 1, side: 4)
        var output = [Float](repeating: .nan, count: 16)
        output.withUnsafeMutableBufferPointer { preparation.prepare(images, indices: [0][...], into: $0) }
        for row in 0..<4 {
            let values = Array(output[(row * 4)..<(row * 4 + 4)])
            #expect(zip(values, [0, 0.25, 0.75, 1] as [Float]).allSatisfy { abs($0 - $1) < 1e-6 }, "\(values)")
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
