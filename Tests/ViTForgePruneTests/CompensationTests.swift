import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

/// Least-squares compensation (`--compensate`) in float64 against references written here without LAPACK: the
/// refit equals the ridge least-squares solution of the raw data, is the identity when nothing is removed, is exact
/// when removed channels depend linearly on kept ones, never does worse than the mean shift in sample, and its Gram
/// accumulation on the device (CPU and OpenCL) equals a float64 accumulation.
struct CompensationTests {
    /// `rows` × `cols` activations: Gaussian-ish columns with different means and scales.
    static func activations(rows: Int, cols: Int, generator: inout SeededGenerator) -> [Double] {
        let means = (0 ..< cols).map { _ in 2 * generator.uniform() - 0.5 }
        let scales = (0 ..< cols).map { _ in 0.2 + generator.uniform() }
        return (0 ..< rows * cols).map { i in
            means[i % cols] + scales[i % cols] * (generator.uniform() + generator.uniform() - 1)
        }
    }

    static func randomMatrix(_ count: Int, generator: inout SeededGenerator) -> [Double] {
        (0 ..< count).map { _ in 2 * generator.uniform() - 1 }
    }

    /// Solves the dense n×n system a·x = b (b [n, m] row-major) by Gaussian elimination with partial pivoting.
    static func gaussSolve(_ a: [Double], _ b: [Double], n: Int, m: Int) -> [Double] {
        var a = a, b = b
        for col in 0 ..< n {
            let pivot = (col ..< n).max { abs(a[$0 * n + col]) < abs(a[$1 * n + col]) }!
            if pivot != col {
                for j in 0 ..< n { a.swapAt(col * n + j, pivot * n + j) }
                for j in 0 ..< m { b.swapAt(col * m + j, pivot * m + j) }
            }
            for row in 0 ..< n where row != col {
                let factor = a[row * n + col] / a[col * n + col]
                if factor == 0 { continue }
                for j in 0 ..< n { a[row * n + j] -= factor * a[col * n + j] }
                for j in 0 ..< m { b[row * m + j] -= factor * b[col * m + j] }
            }
        }
        for row in 0 ..< n { for j in 0 ..< m { b[row * m + j] /= a[row * n + row] } }
        return b
    }

    /// The ridge least-squares refit straight from the raw tokens: with Z = [X_K, 1] and targets Y = X·Wᵀ + b,
    /// minimise ‖Y − Z·Θ‖²/n + λ‖Θ_K − W_Kᵀ‖² (intercept unpenalised) by its normal equations.
    static func referenceRefit(x: [Double], rows: Int, cols: Int, weight: [Double], bias: [Double], outputs: Int,
                               kept: [Int], lambda: Double) -> (weight: [Double], bias: [Double]) {
        let k = kept.count, z = k + 1
        var normal = [Double](repeating: 0, count: z * z), rhs = [Double](repeating: 0, count: z * outputs)
        for t in 0 ..< rows {
            let row = Array(x[(t * cols) ..< ((t + 1) * cols)])
            let features = kept.map { row[$0] } + [1]
            let target = (0 ..< outputs).map { o in bias[o] + (0 ..< cols).reduce(0) { $0 + weight[o * cols + $1] * row[$1] } }
            for i in 0 ..< z {
                for j in 0 ..< z { normal[i * z + j] += features[i] * features[j] / Double(rows) }
                for o in 0 ..< outputs { rhs[i * outputs + o] += features[i] * target[o] / Double(rows) }
            }
        }
        for (i, j) in kept.enumerated() {
            normal[i * z + i] += lambda
            for o in 0 ..< outputs { rhs[i * outputs + o] += lambda * weight[o * cols + j] }
        }
        let theta = gaussSolve(normal, rhs, n: z, m: outputs)  // [z, outputs]
        var w = [Double](repeating: 0, count: outputs * k)
        for o in 0 ..< outputs { for i in 0 ..< k { w[o * k + i] = theta[i * outputs + o] } }
        return (w, (0 ..< outputs).map { theta[k * outputs + $0] })
    }

    /// The layer's mean squared output error on the tokens when `kept` inputs feed (weight', bias').
    static func empiricalError(x: [Double], rows: Int, cols: Int, weight: [Double], bias: [Double], outputs: Int,
                               kept: [Int], newWeight: [Double], newBias: [Double]) -> Double {
        var total = 0.0
        for t in 0 ..< rows {
            for o in 0 ..< outputs {
                var full = bias[o], small = newBias[o]
                for j in 0 ..< cols { full += weight[o * cols + j] * x[t * cols + j] }
                for (i, j) in kept.enumerated() { small += newWeight[o * kept.count + i] * x[t * cols + j] }
                total += (full - small) * (full - small)
            }
        }
        return total / Double(rows)
    }

    enum KeptSet: String, CaseIterable { case one, all, few }

    static func kept(_ set: KeptSet, cols: Int) -> [Int] {
        switch set {
        case .one: return [cols / 2]
        case .all: return Array(0 ..< cols)
        case .few: return [0, 3, 4, cols - 1]
        }
    }

    @Test("refit == float64 ridge least squares of the raw tokens (odd sizes; kept sets of 1, all, a few)",
          arguments: KeptSet.allCases, [0.0, 0.05])
    func refitMatchesReference(set: KeptSet, ridge: Double) throws {
        var generator = SeededGenerator(seed: 0xC0_4F ^ set.rawValue.hashStable)
        let rows = 53, cols = 9, outputs = 7
        let x = Self.activations(rows: rows, cols: cols, generator: &generator)
        let weight = Self.randomMatrix(outputs * cols, generator: &generator)
        let bias = Self.randomMatrix(outputs, generator: &generator)
        let moments = ActivationMoments(rows: x, cols: cols)
        let kept = Self.kept(set, cols: cols)
        let refit = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs, kept: kept,
                                                moments: moments, ridge: ridge)
        let lambda = LeastSquaresRefit.lambda(ridge: ridge, moments: moments)
        let expected = Self.referenceRefit(x: x, rows: rows, cols: cols, weight: weight, bias: bias,
                                           outputs: outputs, kept: kept, lambda: lambda)
        #expect(maxDifference(refit.weight, expected.weight) < 1e-9, "\(set) ridge \(ridge): weights")
        #expect(maxDifference(refit.bias, expected.bias) < 1e-9, "\(set) ridge \(ridge): bias")
        // The reported refit error is the refit's empirical error on these tokens.
        let empirical = Self.empiricalError(x: x, rows: rows, cols: cols, weight: weight, bias: bias, outputs: outputs,
                                            kept: kept, newWeight: refit.weight, newBias: refit.bias)
        #expect(abs(refit.error.refit * refit.error.outputVariance - empirical) < 1e-9 * max(1, empirical))
    }

    @Test("nothing removed: the refit returns W and b exactly, whatever the ridge")
    func identityWhenNothingRemoved() throws {
        var generator = SeededGenerator(seed: 0x1D)
        let rows = 31, cols = 11, outputs = 5
        let moments = ActivationMoments(rows: Self.activations(rows: rows, cols: cols, generator: &generator), cols: cols)
        let weight = Self.randomMatrix(outputs * cols, generator: &generator)
        let bias = Self.randomMatrix(outputs, generator: &generator)
        for ridge in [0.0, 0.01, 10] {
            let refit = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs,
                                                    kept: Array(0 ..< cols), moments: moments, ridge: ridge)
            #expect(refit.weight == weight && refit.bias == bias, "ridge \(ridge)")
            #expect(refit.error.refit == 0 && refit.error.cut == 0)
        }
    }

    @Test("removed channels linearly dependent on kept ones (plus a constant): the output is reproduced exactly",
          arguments: [false, true])
    func dependentChannelsReproducedExactly(duplicateKept: Bool) throws {
        var generator = SeededGenerator(seed: 0xDE9 ^ (duplicateKept ? 1 : 0))
        let rows = 47, free = 5, outputs = 6
        let base = Self.activations(rows: rows, cols: free, generator: &generator)
        // Columns: 5 free, then (optionally) an exact copy of column 1 (kept: Σ_KK singular at λ = 0, solved on its
        // positive eigen-space), then 3 removed = combinations of the free ones + constants.
        let combos = (0 ..< 3).map { _ in Self.randomMatrix(free + 1, generator: &generator) }
        let cols = free + (duplicateKept ? 1 : 0) + 3
        var x = [Double]()
        for t in 0 ..< rows {
            let row = Array(base[(t * free) ..< ((t + 1) * free)])
            x += row
            if duplicateKept { x.append(row[1]) }
            for c in combos { x.append(c[free] + (0 ..< free).reduce(0) { $0 + c[$1] * row[$1] }) }
        }
        let kept = Array(0 ..< (cols - 3))
        let weight = Self.randomMatrix(outputs * cols, generator: &generator)
        let bias = Self.randomMatrix(outputs, generator: &generator)
        let refit = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs, kept: kept,
                                                moments: ActivationMoments(rows: x, cols: cols), ridge: 0)
        let empirical = Self.empiricalError(x: x, rows: rows, cols: cols, weight: weight, bias: bias, outputs: outputs,
                                            kept: kept, newWeight: refit.weight, newBias: refit.bias)
        #expect(empirical < 1e-20, "mean squared output error \(empirical)")
        #expect(refit.error.refit < 1e-12 && refit.error.meanShift > 1e-3)
    }

    @Test("in-sample error: refit ≤ mean shift ≤ plain cut; the constant-only regression is VBP's fold",
          arguments: [0.0, 0.01, 1.0])
    func refitNeverWorseThanMeanShift(ridge: Double) throws {
        var generator = SeededGenerator(seed: 0x3E ^ UInt64(ridge * 100))
        let rows = 41, cols = 13, outputs = 4
        let x = Self.activations(rows: rows, cols: cols, generator: &generator)
        let moments = ActivationMoments(rows: x, cols: cols)
        let weight = Self.randomMatrix(outputs * cols, generator: &generator)
        let bias = Self.randomMatrix(outputs, generator: &generator)
        for kept in [[2], [0, 5, 6, 12], Array(0 ..< 12)] {
            let refit = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs, kept: kept,
                                                    moments: moments, ridge: ridge)
            #expect(refit.error.refit <= refit.error.meanShift * (1 + 1e-12))
            #expect(refit.error.meanShift <= refit.error.cut)
            // The mean shift's error as reported is the empirical error of VBP's fold.
            let removed = (0 ..< cols).filter { !kept.contains($0) }
            let folded = VarianceBasedPruning.foldedBias(
                fc2Weight: HostTensor(shape: [outputs, cols], values: weight.map { Float($0) }),
                fc2Bias: bias.map { Float($0) }, removed: removed, mean: moments.mean)
            let keptWeight = LeastSquaresRefit.columns(weight.map { Double(Float($0)) }, rows: outputs, cols: cols, kept)
            let meanShift = Self.empiricalError(
                x: x, rows: rows, cols: cols, weight: weight.map { Double(Float($0)) },
                bias: bias.map { Double(Float($0)) }, outputs: outputs, kept: kept, newWeight: keptWeight,
                newBias: folded)
            let reported = LeastSquaresRefit.reconstructionError(
                weight: weight.map { Double(Float($0)) }, outputs: outputs, kept: kept, removed: removed,
                correction: [Double](repeating: 0, count: outputs * kept.count), moments: moments)
            #expect(abs(reported.meanShift * reported.outputVariance - meanShift) < 1e-9 * max(1, meanShift))
        }
    }

    @Test("Gram accumulation on the device (CPU, OpenCL) == float64 accumulation, odd sizes, several batches, a column with a large mean and a tiny spread")
    func gramOnDeviceMatchesFloat64() throws {
        var generator = SeededGenerator(seed: 0x6A)
        let cols = 13, batches = [37, 29, 37]
        let rows = batches.reduce(0, +)
        var x = Self.activations(rows: rows, cols: cols, generator: &generator)
        for t in 0 ..< rows { x[t * cols + 4] = 100 + 0.01 * (generator.uniform() - 0.5) }
        let floats = x.map { Float($0) }
        let expected = ActivationMoments(rows: floats.map(Double.init), cols: cols)
        for (name, backend) in MaskedEqualsPrunedTests.backends {
            let scratch = try GramScratch(backend: backend)
            let accumulator = GramAccumulator(cols: cols)
            var start = 0
            for count in batches {
                let buffer = try backend.makeBuffer(Array(floats[(start * cols) ..< ((start + count) * cols)]))
                try accumulator.add(buffer, rows: count, scratch: scratch)
                start += count
            }
            let moments = try accumulator.moments()
            #expect(moments.observations == rows)
            #expect(maxDifference(moments.mean, expected.mean) < 1e-5 * 100, "\(name): means")
            // Every covariance entry relative to its own scale √(Σ_ii Σ_jj), so the tiny-spread column counts.
            var worst = 0.0
            for i in 0 ..< cols {
                for j in 0 ..< cols {
                    let scale = (expected[i, i] * expected[j, j]).squareRoot()
                    worst = max(worst, abs(moments[i, j] - expected[i, j]) / scale)
                }
            }
            #expect(worst < 1e-4, "\(name): covariance relative error \(worst)")
        }
    }

    @Test("the model's pass reads the right buffers: fc2's and proj's input moments == those of the activations; a token-pruned model's blocks over the tokens they see",
          arguments: [false, true])
    func modelMomentsMatchActivations(tokenPruned: Bool) throws {
        var generator = SeededGenerator(seed: 0x77)
        let config = irregularConfig(.tokenPooling)
        var weights = try randomWeights(config, generator: &generator)
        if tokenPruned { try weights.setTokenSets(randomTokenSets(config, prefixOnlyFrom: nil, generator: &generator)) }
        let batch = 3
        let pixels = randomImages(config, batch: batch, generator: &generator)
        let images = try InMemoryImages(images: pixels, labels: [0, 1, 2],
                                        imageElements: config.inChannels * config.imageSize * config.imageSize)
        let backend = CPUBackend()
        let layers: [Compensation.Layer] = [.mlp(block: 1), .attention(block: 3)]
        let moments = try Compensation.moments(of: weights, layers: layers, backend: backend, images: images,
                                               batchSize: 2)
        let model = try VisionTransformer(weights: weights, backend: backend)
        try model.forward(images: backend.makeBuffer(pixels), batch: batch)
        let rows = (0 ..< config.depth).map { batch * weights.config.tokens(inBlock: $0) }
        if tokenPruned { #expect(rows[3] < batch * config.tokens, "the token sets drop nothing: \(rows)") }
        #expect(model.lastRows(block: 1) == rows[1] && model.lastRows(block: 3) == rows[3])
        let hidden = try backend.read(model.mlpHiddenActivations(block: 1), count: rows[1] * config.blocks[1].mlpHidden)
        let merged = try backend.read(model.attentionMergedValues(block: 3),
                                      count: rows[3] * config.blocks[3].attentionWidth)
        for (layer, values, cols, rows) in [(layers[0], hidden, config.blocks[1].mlpHidden, rows[1]),
                                            (layers[1], merged, config.blocks[3].attentionWidth, rows[3])] {
            let expected = ActivationMoments(rows: values.map(Double.init), cols: cols)
            let got = try #require(moments[layer])
            #expect(got.observations == rows)
            #expect(maxDifference(got.mean, expected.mean) < 1e-5)
            #expect(maxDifference(got.covariance, expected.covariance) < 1e-5)
        }
    }

    @Test("pruned == masked + compensation (float64 reference): the refit lands in the columns surgery keeps",
          arguments: SurgeryInvariantTests.Spaces.allCases)
    func prunedEqualsMaskedCompensated(spaces: SurgeryInvariantTests.Spaces) throws {
        var generator = SeededGenerator(seed: 0xC3 ^ spaces.rawValue.hashStable)
        let config = irregularConfig(.tokenPooling)
        let weights = try randomWeights(config, generator: &generator)
        let plan = try SurgeryInvariantTests.randomPlan(config, spaces, generator: &generator)
        let batch = 4
        let pixels = randomImages(config, batch: batch, generator: &generator)
        let images = try InMemoryImages(images: pixels, labels: [0, 1, 2, 3],
                                        imageElements: config.inChannels * config.imageSize * config.imageSize)
        let (compensated, records) = try Compensation.compensate(weights, plan: plan, backend: CPUBackend(),
                                                                 images: images, batchSize: 3, ridge: 0.01)
        #expect(records.count == Compensation.layers(of: plan, config: config).count)
        for record in records { #expect(record.error.refit <= record.error.meanShift * (1 + 1e-9) + 1e-12) }
        let pruned = try Surgery.prune(compensated, plan: plan)
        let doubles = pixels.map(Double.init)
        let masked = reference(compensated, masks: masks(for: plan, of: config)).logits(doubles, batch: batch)
        let small = reference(pruned).logits(doubles, batch: batch)
        #expect(maxDifference(masked.flatMap { $0 }, small.flatMap { $0 }) < 1e-9, "\(spaces)")
    }

    @Test(.enabled(if: FashionMNIST.present, "needs the Debian package dataset-fashion-mnist"))
    func refitBeatsMeanShiftOnFixture() throws {
        let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        let images = try FashionMNIST.load("train", limit: 256)
        var budget = Budget(keepMLP: 0.5, keepHeads: 0.5)
        budget.rounding = .multiple(1)
        let result = try CriterionPruning.run(weights, backend: CPUBackend(), criterion: .magnitude(.l2), budget: budget,
                                              scope: .block)
        let (_, records) = try Compensation.compensate(weights, plan: result.plan, backend: CPUBackend(),
                                                       images: images, batchSize: 64)
        #expect(records.count == 2 * weights.config.depth)
        for record in records {
            #expect(record.error.refit <= record.error.meanShift * (1 + 1e-12), "\(record.layer): \(record.error)")
            #expect(record.error.meanShift <= record.error.cut, "\(record.layer): \(record.error)")
        }
    }
}
