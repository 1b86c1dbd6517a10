import Foundation
import Testing
@testable import ViTForgeData

/// `count` grey images of side×side with fresh random pixels and labels cycling through `classes`.
func syntheticDataset(count: Int, side: Int, classes: Int, channels: Int = 1, seed: UInt64 = 7) throws -> Dataset {
    var random = DataRandom(seed: seed, purpose: .order, 99, 0)
    let pixels = (0..<(count * side * side)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    let labels = (0..<count).map { UInt8($0 % classes) }
    let images = LabeledImages(count: count, height: side, width: side, pixels: pixels, labels: labels)
    return try Dataset(store: ImageStore(images, origin: "synthetic"),
                       preparation: ImagePreparation(mean: 0.25, std: 0.5, channels: channels, side: side),
                       name: "synthetic")
}

struct AugmentationTests {
    @Test("augmentation is a pure function of (seed, epoch, index) and covers every shift and both flips")
    func deterministicAugmentation() {
        let recipe = AugmentationRecipe.fashionMNISTFixture
        var seen = Set<ImageAugmentation>()
        var differsAcrossSeeds = 0
        for index in 0..<997 {
            let first = recipe.augmentation(seed: 3, epoch: 5, index: index)
            #expect(first == recipe.augmentation(seed: 3, epoch: 5, index: index))
            #expect(abs(first.dx) <= 2 && abs(first.dy) <= 2)
            seen.insert(first)
            if first != recipe.augmentation(seed: 4, epoch: 5, index: index) { differsAcrossSeeds += 1 }
        }
        #expect(seen.count == 5 * 5 * 2)
        #expect(differsAcrossSeeds > 900)
        #expect(AugmentationRecipe.none.augmentation(seed: 3, epoch: 1, index: 2) == .identity)
    }

    @Test("a shift moves pixels and fills the border with the background; a flip mirrors", arguments: [(1, -1), (-2, 2), (0, 1)])
    func shiftAndFlip(dx: Int, dy: Int) throws {
        let side = 7
        let dataset = try syntheticDataset(count: 3, side: side, classes: 2)
        let plain = try dataset.image(1)
        let background = Float(-0.25 / 0.5)
        let shifted = try dataset.image(1, augmentation: ImageAugmentation(dx: dx, dy: dy, flip: false))
        let mirrored = try dataset.image(1, augmentation: ImageAugmentation(dx: 0, dy: 0, flip: true))
        let both = try dataset.image(1, augmentation: ImageAugmentation(dx: dx, dy: dy, flip: true))
        for y in 0..<side {
            for x in 0..<side {
                let (sourceY, sourceX) = (y - dy, x - dx)
                let inside = (0..<side).contains(sourceY) && (0..<side).contains(sourceX)
                #expect(shifted[y * side + x] == (inside ? plain[sourceY * side + sourceX] : background))
                #expect(mirrored[y * side + x] == plain[y * side + side - 1 - x])
                #expect(both[y * side + x] == shifted[y * side + side - 1 - x])
            }
        }
        #expect(shifted != plain && mirrored != plain)
    }

    @Test("epoch order is a permutation, seeded, and differs between epochs")
    func epochOrder() throws {
        let dataset = try syntheticDataset(count: 37, side: 2, classes: 3)
        let loader = try BatchLoader(dataset: dataset, batchSize: 5, seed: 11)
        let first = loader.order(epoch: 0)
        #expect(first.sorted() == Array(0..<37))
        #expect(first != Array(0..<37))
        #expect(loader.order(epoch: 1).sorted() == Array(0..<37))
        #expect(loader.order(epoch: 1) != first)
        #expect(try BatchLoader(dataset: dataset, batchSize: 5, seed: 11).order(epoch: 0) == first)
        #expect(try BatchLoader(dataset: dataset, batchSize: 5, seed: 12).order(epoch: 0) != first)
        #expect(try BatchLoader(dataset: dataset, batchSize: 5, seed: 11, shuffle: false).order(epoch: 3) == Array(0..<37))
    }

    /// Pinned values: a change to the generator (or to how seeds are mixed) would break every saved checkpoint's
    /// data order, so it must show up here first.
    @Test("the generator's output is pinned")
    func pinnedGenerator() {
        var random = DataRandom(seed: 0, purpose: .order, 0, 0)
        let values = (0..<3).map { _ in random.next() }
        var again = DataRandom(seed: 0, purpose: .order, 0, 0)
        #expect(values == (0..<3).map { _ in again.next() })
        var small = DataRandom(seed: 1, purpose: .augmentation, 2, 3)
        let draws = (0..<1000).map { _ in small.below(7) }
        #expect(draws.allSatisfy { (0..<7).contains($0) } && Set(draws).count == 7)
        var oneTwo = DataRandom(seed: 0, purpose: .order, 1, 2)
        var twoOne = DataRandom(seed: 0, purpose: .order, 2, 1)
        #expect(oneTwo.permutation(9) != twoOne.permutation(9))
    }
}

struct DatasetTests {
    @Test("class subsets with and without remapped labels")
    func classSubsets() throws {
        let dataset = try syntheticDataset(count: 40, side: 3, classes: 10)
        let kept = try dataset.subset(classes: [7, 2, 9], remap: false)
        #expect(kept.count == 12 && kept.classCount == 10)
        #expect(Set(kept.labels) == [2, 7, 9])
        #expect(kept.members == (0..<40).filter { [2, 7, 9].contains($0 % 10) })
        let remapped = try dataset.subset(classes: [7, 2, 9], remap: true)
        #expect(remapped.classCount == 3 && remapped.classNames == ["7", "2", "9"])
        for position in 0..<remapped.count {
            let original = remapped.members[position] % 10
            #expect(remapped.label(position) == [7: 0, 2: 1, 9: 2][original])
        }
        #expect(try remapped.image(4) == dataset.image(remapped.members[4]))
        #expect(throws: DataFileError.self) { try dataset.subset(classes: [3, 10], remap: true) }
        #expect(throws: DataFileError.self) { try dataset.subset(classes: [3, 3], remap: true) }
        #expect(throws: DataFileError.self) { try remapped.subset(classes: [1, 2], remap: false).subset(classes: [0], remap: false) }
    }

    @Test("validation split: stratified, disjoint, complete, deterministic from the seed")
    func validationSplit() throws {
        let dataset = try syntheticDataset(count: 197, side: 2, classes: 7)
        let (training, validation) = try dataset.splitValidation(fraction: 0.2, seed: 5)
        #expect(Set(training.members).isDisjoint(with: validation.members))
        #expect((training.members + validation.members).sorted() == Array(0..<197))
        #expect(training.members == training.members.sorted())
        for label in 0..<7 {
            let inClass = (0..<197).filter { $0 % 7 == label }.count
            let held = validation.labels.filter { $0 == label }.count
            #expect(held == Int((Double(inClass) * 0.2).rounded()), "class \(label)")
        }
        #expect(try dataset.splitValidation(fraction: 0.2, seed: 5).validation.members == validation.members)
        #expect(try dataset.splitValidation(fraction: 0.2, seed: 6).validation.members != validation.members)
        #expect(throws: DataFileError.self) { try dataset.splitValidation(fraction: 1, seed: 5) }
    }

    @Test("fashion-mnist: train/test from the Debian package, validation carved from train only (skips without the package)",
          .enabled(if: FileManager.default.fileExists(atPath: IDXDataset.fashionMNISTFolder)))
    func fashionMNIST() throws {
        let options = DatasetOptions(channels: 1, side: 28, classes: [5, 7, 9], remapLabels: true,
                                     validationFraction: 0.1, seed: 1)
        let splits = try Dataset.load("fashion-mnist", options: options)
        let test = try #require(splits.test)
        let validation = try #require(splits.validation)
        #expect(splits.training.count == 16_200 && validation.count == 1_800 && test.count == 3_000)
        #expect(splits.training.classNames == ["Sandal", "Sneaker", "Ankle boot"])
        #expect(Set(validation.members).isDisjoint(with: splits.training.members))
        #expect(splits.training.preparation.mean == ImagePreparation.fashionMNISTMean)
        #expect(test.store.count == 10_000 && validation.store.count == 60_000)
    }
}

struct BatchLoaderTests {
    @Test("prefetched batches equal the batches prepared on the spot, in order and out of order (resume)")
    func prefetchMatchesDirect() throws {
        let dataset = try syntheticDataset(count: 53, side: 5, classes: 4, channels: 3)
        let recipe = AugmentationRecipe.fashionMNISTFixture
        let direct = try BatchLoader(dataset: dataset, batchSize: 8, seed: 9, augmentation: recipe, prefetch: false)
        let ahead = try BatchLoader(dataset: dataset, batchSize: 8, seed: 9, augmentation: recipe, prefetch: true)
        #expect(direct.batchesPerEpoch == 7)
        var all: [[Int]: (images: [Float], labels: [Int32])] = [:]
        for epoch in 0..<2 {
            for index in 0..<direct.batchesPerEpoch {
                let expected = try direct.batch(epoch: epoch, index: index)
                let got = try ahead.batch(epoch: epoch, index: index)
                #expect(got.images == expected.images && got.labels == expected.labels, "epoch \(epoch) batch \(index)")
                all[[epoch, index]] = expected
            }
        }
        #expect(all[[1, 6]]?.labels.count == 53 - 48)
        // A resumed run asks for batches out of sequence; a fresh loader must agree too.
        let resumed = try BatchLoader(dataset: dataset, batchSize: 8, seed: 9, augmentation: recipe)
        for key in [[1, 3], [0, 6], [1, 0], [1, 1]] {
            let got = try resumed.batch(epoch: key[0], index: key[1])
            #expect(got.images == all[key]?.images && got.labels == all[key]?.labels, "\(key)")
        }
        #expect(all[[0, 0]]?.images != all[[1, 0]]?.images)
    }

    @Test("the shares of a batch for 1 to 6 ranks (prefetched or not) put together are the whole batch")
    func sharesMakeTheBatch() throws {
        // 53 images in batches of 8: the last batch has 5, so with 6 ranks one share is empty.
        let dataset = try syntheticDataset(count: 53, side: 5, classes: 4, channels: 3)
        let recipe = AugmentationRecipe.fashionMNISTFixture
        let whole = try BatchLoader(dataset: dataset, batchSize: 8, seed: 9, augmentation: recipe, prefetch: false)
        let elements = whole.imageElements
        for parts in 1...6 {
            for prefetch in [false, true] {
                let loaders = try (0..<parts).map { _ in
                    try BatchLoader(dataset: dataset, batchSize: 8, seed: 9, augmentation: recipe, prefetch: prefetch)
                }
                for (epoch, index) in [(0, 0), (0, 1), (0, 6), (1, 0), (1, 6), (1, 2)] {
                    let expected = try whole.batch(epoch: epoch, index: index)
                    var images: [Float] = [], labels: [Int32] = []
                    for (part, loader) in loaders.enumerated() {
                        var imageBuffer = [Float](repeating: .nan, count: 8 * elements)
                        var labelBuffer = [Int32](repeating: -1, count: 8)
                        let count = try imageBuffer.withUnsafeMutableBufferPointer { i in
                            try labelBuffer.withUnsafeMutableBufferPointer { l in
                                try loader.fill(epoch: epoch, index: index, part: part, of: parts, images: i, labels: l)
                            }
                        }
                        #expect(count.batch == expected.labels.count)
                        #expect(count.shard == BatchShards.range(of: count.batch, part: part, parts: parts).count)
                        images += imageBuffer[0 ..< count.shard * elements]
                        labels += labelBuffer[0 ..< count.shard]
                    }
                    #expect(images == expected.images && labels == expected.labels,
                            "\(parts) parts, prefetch \(prefetch), epoch \(epoch) batch \(index)")
                }
            }
        }
        #expect(BatchShards.range(of: 5, part: 5, parts: 6).isEmpty)
        #expect((0..<4).map { BatchShards.range(of: 11, part: $0, parts: 4) } == [0..<3, 3..<6, 6..<9, 9..<11])
    }

    @Test("batch contents follow the epoch order and the per-image augmentation; drop-last counts")
    func batchContents() throws {
        let dataset = try syntheticDataset(count: 29, side: 4, classes: 3)
        let loader = try BatchLoader(dataset: dataset, batchSize: 6, seed: 2, augmentation: .fashionMNISTFixture)
        let order = loader.order(epoch: 4)
        let batch = try loader.batch(epoch: 4, index: 2)
        for slot in 0..<6 {
            let position = order[12 + slot]
            #expect(batch.labels[slot] == dataset.labels[position])
            let expected = try dataset.image(position, augmentation: loader.augmentation(epoch: 4, position: position))
            #expect(Array(batch.images[(slot * 16)..<(slot * 16 + 16)]) == expected)
        }
        #expect(loader.batchesPerEpoch == 5)
        #expect(try BatchLoader(dataset: dataset, batchSize: 6, seed: 2, dropLast: true).batchesPerEpoch == 4)
        #expect(throws: DataFileError.self) { try loader.batch(epoch: 0, index: 5) }
        #expect(throws: DataFileError.self) { try BatchLoader(dataset: dataset, batchSize: 30, seed: 2, dropLast: true) }
    }
}
