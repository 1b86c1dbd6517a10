import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport
import ViTForgeTrain

/// The statistics passes of a data-parallel pruning run, with threads standing in for the ranks (`ThreadRanks`):
/// each rank takes its share of every calibration batch and the results are merged across ranks; they must be one
/// process's, up to summation order. 23 images in batches of 7 leave a last batch of 2, so with 3 ranks one rank's
/// share of it is empty.
struct DataParallelStatisticsTests {
    static let config = irregularConfig(.tokenPooling)

    static func inputs() throws -> (weights: ViTWeights, images: InMemoryImages) {
        var generator = SeededGenerator(seed: 31)
        let weights = try randomWeights(config, generator: &generator)
        let count = 23
        let pixels = randomImages(config, batch: count, generator: &generator)
        let labels = (0..<count).map { _ in Int32(generator.below(config.classes)) }
        return (weights, try InMemoryImages(images: pixels, labels: labels,
                                            imageElements: pixels.count / count))
    }

    static func relative(_ a: [Double], _ b: [Double]) -> Double {
        let difference = zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        return (difference / max(b.reduce(0) { $0 + $1 * $1 }, 1e-300)).squareRoot()
    }

    @Test("VBP's neuron means and variances merged over 2 and 3 ranks equal one process's", arguments: [2, 3])
    func variances(ranks: Int) throws {
        let (weights, images) = try Self.inputs()
        let single = try VarianceBasedPruning.statistics(
            of: VisionTransformer(weights: weights, backend: CPUBackend()), images: images, batchSize: 7,
            collective: SingleProcess())
        let merged = try ThreadRanks(size: ranks).run { collective in
            try VarianceBasedPruning.statistics(of: VisionTransformer(weights: weights, backend: CPUBackend()),
                                                images: images, batchSize: 7, collective: collective)
        }
        for statistics in merged {
            #expect(statistics.observations == single.observations)
            for b in single.mean.indices {
                #expect(Self.relative(statistics.mean[b], single.mean[b]) < 1e-6, "block \(b) means")
                #expect(Self.relative(statistics.variance[b], single.variance[b]) < 1e-6, "block \(b) variances")
            }
            #expect(statistics == merged[0], "ranks disagree")
        }
    }

    @Test("Taylor's accumulated gradients summed over 2 and 3 ranks equal one process's", arguments: [2, 3])
    func taylorGradients(ranks: Int) throws {
        let (weights, images) = try Self.inputs()
        let single = try Importance.accumulatedGradients(
            of: VisionTransformer(weights: weights, backend: CPUBackend()), images: images, limit: nil, batchSize: 7,
            collective: SingleProcess())
        let summed = try ThreadRanks(size: ranks).run { collective in
            try Importance.accumulatedGradients(of: VisionTransformer(weights: weights, backend: CPUBackend()),
                                                images: images, limit: nil, batchSize: 7, collective: collective)
        }
        for gradients in summed {
            #expect(gradients.keys.sorted() == single.keys.sorted())
            for (name, reference) in single {
                let mine = try #require(gradients[name])
                #expect(Self.relative(mine.map(Double.init), reference.map(Double.init)) < 1e-5, "\(name)")
            }
        }
    }

    @Test("merging per-rank (count, mean, M2) is Chan's exact update, also with an empty rank and per-block counts")
    func chanMerge() throws {
        // Three ranks' data, one of them empty; float64 reference from all the values at once. Block 1 sees only
        // each rank's first value, as a token-pruned model's later blocks see fewer tokens than the first.
        let data: [[Double]] = [[1e4 + 0.5, 1e4 - 0.25, 1e4 + 1], [1e4 + 2, 1e4 - 3], []]
        let blocks: [[[Double]]] = [data, data.map { Array($0.prefix(1)) }]
        @Sendable func moments(_ values: [Double]) -> (mean: Double, m2: Double) {
            let mean = values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
            return (mean, values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) })
        }
        let results = try ThreadRanks(size: 3).run { collective in
            let mine = blocks.map { moments($0[collective.rank]) }
            return try VarianceBasedPruning.mergedAcrossRanks(
                means: mine.map { [$0.mean] }, squaredDeviations: mine.map { [$0.m2] },
                counts: blocks.map { $0[collective.rank].count }, collective: collective)
        }
        for result in results {
            #expect(result.counts == [5, 2])
            for (b, block) in blocks.enumerated() {
                let all = moments(block.flatMap { $0 })
                #expect(abs(result.means[b][0] - all.mean) < 1e-9, "block \(b)")
                #expect(abs(result.squaredDeviations[b][0] - all.m2) < 1e-6 * all.m2, "block \(b)")
            }
        }
    }
}
