import Foundation
import Testing
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics

/// Fashion-MNIST from the Debian package, through ViTForgeData's IDX reader; pixels x/255 then
/// (x − 0.2860)/0.3530, as the fixtures were trained.
enum FashionMNIST {
    static let folder = "/usr/share/datasets/fashion-mnist"
    static var present: Bool { FileManager.default.fileExists(atPath: folder + "/t10k-images-idx3-ubyte.gz") }

    /// The first `limit` images of a split, normalised, and their labels.
    static func load(_ split: String, limit: Int) throws -> InMemoryImages {
        let images = try IDXFile(path: "\(folder)/\(split)-images-idx3-ubyte.gz", magic: IDXFile.imagesMagic, kind: "images")
        let labels = try IDXFile(path: "\(folder)/\(split)-labels-idx1-ubyte.gz", magic: IDXFile.labelsMagic, kind: "labels")
        let count = min(limit, images.dimensions[0], labels.dimensions[0])
        let mean = Float(ImagePreparation.fashionMNISTMean), std = Float(ImagePreparation.fashionMNISTStd)
        let pixels = images.bytes[0..<(count * 784)].map { (Float($0) / 255 - mean) / std }
        return try InMemoryImages(images: pixels, labels: labels.bytes[0..<count].map { Int32($0) }, imageElements: 784)
    }
}

/// VBP without fine-tuning on fm-vit-c at 50% of MLP neurons, 2000 calibration images, against the plain-PyTorch
/// numbers in `baselines-shared.json`: accuracy on all 10,000 test images within 0.3 points, per-block widths
/// within ±2, parameter counts equal.
///
/// The four 10,000-image evaluations take ~13 s each in an optimised build but ~66 s each in a debug build (the
/// CPU backend's Swift loops, mostly erf-GELU, are unoptimised there), so a debug `swift test` checks only what the
/// statistics decide (widths, parameter counts: ~25 s); the accuracies run in an optimised build
/// (`swift test -c release -Xswiftc -enable-testing --filter VBPReproduction`: ~60 s) or with
/// VITFORGE_FULL_REPRODUCTION=1.
@Suite(.serialized)
struct VBPReproductionTests {
    static var evaluatesAccuracy: Bool {
        #if DEBUG
        return ProcessInfo.processInfo.environment["VITFORGE_FULL_REPRODUCTION"] == "1"
        #else
        return true
        #endif
    }

    struct Baseline: Decodable {
        let test_acc: Double
        let mlp_widths: [Int]
        let params: Int
    }

    static let baselines: [String: Baseline] = [
        // fixtures/baselines-shared.json, "fm-vit-c" (copied: the shared folder is not part of the repository).
        "vbp_50pct_per_block_with_bias_fold": Baseline(test_acc: 0.8222, mlp_widths: [192, 192, 192, 192], params: 306_826),
        "vbp_50pct_per_block_without_bias_fold": Baseline(test_acc: 0.8228, mlp_widths: [192, 192, 192, 192], params: 306_826),
        "vbp_50pct_global_with_bias_fold": Baseline(test_acc: 0.8253, mlp_widths: [239, 127, 189, 213], params: 306_826),
        "vbp_50pct_global_without_bias_fold": Baseline(test_acc: 0.8258, mlp_widths: [239, 127, 189, 213], params: 306_826),
    ]

    static func accuracy(_ weights: ViTWeights, on images: InMemoryImages, backend: Backend) throws -> Double {
        let model = try VisionTransformer(weights: weights, backend: backend)
        let classes = weights.config.classes
        var correct = 0
        try images.forEachBatch(limit: nil, batchSize: 500) { pixels, labels, count, _ in
            let logits = try backend.read(model.forward(images: backend.makeBuffer(pixels), batch: count),
                                          count: count * classes)
            for r in 0..<count {
                let row = logits[(r * classes)..<((r + 1) * classes)]
                if row.firstIndex(of: row.max()!)! - r * classes == Int(labels[r]) { correct += 1 }
            }
        }
        return Double(correct) / Double(images.count)
    }

    @Test(.enabled(if: FashionMNIST.present, "needs the Debian package dataset-fashion-mnist"))
    func statisticsMatchPyTorch() throws {
        let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        let backend = CPUBackend()
        let model = try VisionTransformer(weights: weights, backend: backend)
        let statistics = try VarianceBasedPruning.statistics(of: model, images: FashionMNIST.load("t10k", limit: 512),
                                                             batchSize: 128)
        let ref = try SafetensorsFile(path: fixture("fm-vit-c-ref.safetensors"))
        for b in 0..<weights.config.depth {
            let mean = try ref.floats("features.block\(b).mlp_hidden_mean").map(Double.init)
            let variance = try ref.floats("features.block\(b).mlp_hidden_var").map(Double.init)
            #expect(maxDifference(statistics.mean[b], mean) < 1e-4 * (mean.map(abs).max() ?? 1))
            #expect(maxDifference(statistics.variance[b], variance) < 1e-4 * (variance.max() ?? 1))
        }
    }

    @Test(.enabled(if: FashionMNIST.present, "needs the Debian package dataset-fashion-mnist"))
    func reproducesPlainPyTorchVBP() throws {
        let clock = ContinuousClock()
        let start = clock.now
        let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        let backend = CPUBackend()
        let calibration = try FashionMNIST.load("train", limit: 2000)
        let test = Self.evaluatesAccuracy ? try FashionMNIST.load("t10k", limit: 10_000) : nil
        if test == nil {
            print("VBP reproduction: debug build, checking widths and parameter counts only; accuracies need an "
                  + "optimised build or VITFORGE_FULL_REPRODUCTION=1")
        }
        let model = try VisionTransformer(weights: weights, backend: backend)
        let statistics = try VarianceBasedPruning.statistics(of: model, images: calibration, batchSize: 100)
        #expect(statistics.observations == [Int](repeating: 2000 * 50, count: weights.config.depth))
        let loaded = clock.now
        for scope in [RankingScope.block, .global] {
            let scored = try VarianceBasedPruning.scoredSpaces(config: weights.config, statistics: statistics, scope: scope)
            let plan = try scored.plan([.mlpHidden: 0.5])
            for fold in [true, false] {
                let key = "vbp_50pct_\(scope == .block ? "per_block" : "global")_\(fold ? "with" : "without")_bias_fold"
                let baseline = try #require(Self.baselines[key])
                let pruned = try VarianceBasedPruning.prune(weights, plan: plan, statistics: statistics, biasFold: fold)
                let widths = pruned.config.blocks.map(\.mlpHidden)
                if let test {
                    let accuracy = try Self.accuracy(pruned, on: test, backend: backend)
                    print("\(key): accuracy \(accuracy) (PyTorch \(baseline.test_acc)), widths \(widths) (PyTorch \(baseline.mlp_widths)), params \(pruned.config.parameterCount)")
                    #expect(abs(accuracy - baseline.test_acc) <= 0.003, "\(key): \(accuracy) vs \(baseline.test_acc)")
                }
                #expect(zip(widths, baseline.mlp_widths).allSatisfy { abs($0 - $1) <= 2 }, "\(key): \(widths)")
                #expect(pruned.config.parameterCount == baseline.params)
            }
        }
        print("VBP reproduction: data + statistics \(loaded - start), total \(clock.now - start)")
    }
}
