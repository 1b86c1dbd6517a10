import Foundation
import ViTForgeData

// An epoch of Fashion-MNIST with the fixture's augmentation (with and without prefetching) and DeiT-sized batches
// (moved from the test suite, where it could only print): `swift run -c release --package-path Benchmarks
// preparation-timing` (needs the Debian package dataset-fashion-mnist).
let clock = ContinuousClock()
var started = clock.now
let splits = try Dataset.load("fashion-mnist", options: DatasetOptions(channels: 1, side: 28))
print("load fashion-mnist train+test: \(clock.now - started)")
for prefetch in [false, true] {
    let loader = try BatchLoader(dataset: splits.training, batchSize: 128, seed: 0,
                                 augmentation: .fashionMNISTFixture, prefetch: prefetch)
    var images = [Float](repeating: 0, count: 128 * loader.imageElements)
    var labels = [Int32](repeating: 0, count: 128)
    var total = 0
    started = clock.now
    for index in 0..<loader.batchesPerEpoch {
        total += try images.withUnsafeMutableBufferPointer { imageBuffer in
            try labels.withUnsafeMutableBufferPointer { try loader.fill(epoch: 0, index: index, images: imageBuffer, labels: $0) }
        }
    }
    print("epoch of \(total) images, 28×28×1, augmented, prefetch \(prefetch): \(clock.now - started)")
}
let deit = try Dataset(store: splits.training.store,
                       preparation: ImagePreparation(means: ImagePreparation.imageNetMeans,
                                                     stds: ImagePreparation.imageNetStds, channels: 3, side: 224),
                       name: "fashion-mnist at 224")
let loader = try BatchLoader(dataset: deit, batchSize: 64, seed: 0, augmentation: .fashionMNISTFixture, prefetch: false)
started = clock.now
for index in 0..<10 { _ = try loader.batch(epoch: 0, index: index) }
print("batch of 64 images 28→224×224×3, augmented: \((clock.now - started) / 10)")
