import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

/// The sequential compensation (`--compensate-order sequential`) in float64: its refit on the pruned model's inputs
/// towards the unpruned model's outputs equals the ridge least-squares solution of the raw tokens, is the parallel
/// refit when nothing changed upstream and the identity when nothing changed at all, reproduces a linear dependence
/// exactly, never does worse than the mean shift in sample; the side-by-side Gram on the device equals a float64
/// accumulation; and the model-level pass visits the right layers and lands where surgery keeps them.
struct SequentialCompensationTests {
    /// Tokens of a layer's unpruned inputs h [rows, cols] and of the pruned model's copy p [rows, kept.count] of the
    /// kept ones: p = h_K + a smooth distortion (what a cut upstream does) unless `exactCopy`.
    static func inputs(rows: Int, cols: Int, kept: [Int], exactCopy: Bool, generator: inout SeededGenerator)
        -> (h: [Double], p: [Double]) {
        let h = CompensationTests.activations(rows: rows, cols: cols, generator: &generator)
        var p = [Double]()
        for t in 0 ..< rows {
            for (c, j) in kept.enumerated() {
                let x = h[t * cols + j]
                p.append(exactCopy ? x : 0.8 * x + 0.3 * sin(2 * x + Double(c)) + 0.05 * (generator.uniform() - 0.5))
            }
        }
        return (h, p)
    }

    /// The joint moments of [h | p], directly in float64.
    static func joint(_ h: [Double], _ p: [Double], rows: Int, cols: Int, k: Int) -> ActivationMoments {
        var z = [Double]()
        for t in 0 ..< rows { z += h[(t * cols) ..< ((t + 1) * cols)] + p[(t * k) ..< ((t + 1) * k)] }
        return ActivationMoments(rows: z, cols: cols + k)
    }

    /// The ridge least squares from the raw tokens: targets Y = H·Wᵀ + b, features [P, 1], penalty λ‖Θ_P − W_Kᵀ‖²
    /// (intercept unpenalised), λ = ridge × h's mean variance; by its normal equations.
    static func referenceRefit(h: [Double], p: [Double], rows: Int, cols: Int, weight: [Double], bias: [Double],
                          outputs: Int, kept: [Int], ridge: Double) -> (weight: [Double], bias: [Double]) {
        let k = kept.count, z = k + 1
        let lambda = ridge * ActivationMoments(rows: h, cols: cols).meanVariance
        var normal = [Double](repeating: 0, count: z * z), rhs = [Double](repeating: 0, count: z * outputs)
        for t in 0 ..< rows {
            let features = Array(p[(t * k) ..< ((t + 1) * k)]) + [1]
            let target = (0 ..< outputs).map { o in
                bias[o] + (0 ..< cols).reduce(0) { $0 + weight[o * cols + $1] * h[t * cols + $1] }
            }
            for i in 0 ..< z {
                for j in 0 ..< z { normal[i * z + j] += features[i] * features[j] / Double(rows) }
                for o in 0 ..< outputs { rhs[i * outputs + o] += features[i] * target[o] / Double(rows) }
            }
        }
        for (i, j) in kept.enumerated() {
            normal[i * z + i] += lambda
            for o in 0 ..< outputs { rhs[i * outputs + o] += lambda * weight[o * cols + j] }
        }
        let theta = CompensationTests.gaussSolve(normal, rhs, n: z, m: outputs)
        var w = [Double](repeating: 0, count: outputs * k)
        for o in 0 ..< outputs { for i in 0 ..< k { w[o * k + i] = theta[i * outputs + o] } }
        return (w, (0 ..< outputs).map { theta[k * outputs + $0] })
    }

    /// Mean squared error of (newWeight on p + newBias) against W·h + b.
    static func empiricalError(h: [Double], p: [Double], rows: Int, cols: Int, weight: [Double], bias: [Double],
                               outputs: Int, k: Int, newWeight: [Double], newBias: [Double]) -> Double {
        var total = 0.0
        for t in 0 ..< rows {
            for o in 0 ..< outputs {
                var full = bias[o], small = newBias[o]
                for j in 0 ..< cols { full += weight[o * cols + j] * h[t * cols + j] }
                for c in 0 ..< k { small += newWeight[o * k + c] * p[t * k + c] }
                total += (full - small) * (full - small)
            }
        }
        return total / Double(rows)
    }

    @Test("sequential refit == float64 ridge least squares of the raw tokens (odd sizes; kept sets of 1, all, a few)",
          arguments: CompensationTests.KeptSet.allCases, [0.0, 0.05])
    func refitMatchesReference(set: CompensationTests.KeptSet, ridge: Double) throws {
        var generator = SeededGenerator(seed: 0x5E0 ^ set.rawValue.hashStable)
        let rows = 57, cols = 9, outputs = 7
        let kept = CompensationTests.kept(set, cols: cols)
        let (h, p) = Self.inputs(rows: rows, cols: cols, kept: kept, exactCopy: false, generator: &generator)
        let weight = CompensationTests.randomMatrix(outputs * cols, generator: &generator)
        let bias = CompensationTests.randomMatrix(outputs, generator: &generator)
        let refit = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs, inputs: cols, kept: kept,
                                                joint: Self.joint(h, p, rows: rows, cols: cols, k: kept.count),
                                                ridge: ridge)
        let expected = Self.referenceRefit(h: h, p: p, rows: rows, cols: cols, weight: weight, bias: bias,
                                      outputs: outputs, kept: kept, ridge: ridge)
        #expect(maxDifference(refit.weight, expected.weight) < 1e-9, "\(set) ridge \(ridge): weights")
        #expect(maxDifference(refit.bias, expected.bias) < 1e-9, "\(set) ridge \(ridge): bias")
        let empirical = Self.empiricalError(h: h, p: p, rows: rows, cols: cols, weight: weight, bias: bias,
                                            outputs: outputs, k: kept.count, newWeight: refit.weight,
                                            newBias: refit.bias)
        #expect(abs(refit.error.refit * refit.error.outputVariance - empirical) < 1e-9 * max(1, empirical))
    }

    @Test("nothing changed upstream (p = h's kept columns): the sequential refit is the parallel one",
          arguments: CompensationTests.KeptSet.allCases, [0.0, 0.01])
    func equalsParallelWhenUpstreamUnchanged(set: CompensationTests.KeptSet, ridge: Double) throws {
        var generator = SeededGenerator(seed: 0xA7 ^ set.rawValue.hashStable)
        let rows = 43, cols = 11, outputs = 5
        let kept = CompensationTests.kept(set, cols: cols)
        let (h, p) = Self.inputs(rows: rows, cols: cols, kept: kept, exactCopy: true, generator: &generator)
        let weight = CompensationTests.randomMatrix(outputs * cols, generator: &generator)
        let bias = CompensationTests.randomMatrix(outputs, generator: &generator)
        let sequential = try LeastSquaresRefit.refit(
            weight: weight, bias: bias, outputs: outputs, inputs: cols, kept: kept,
            joint: Self.joint(h, p, rows: rows, cols: cols, k: kept.count), ridge: ridge)
        let parallel = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs, kept: kept,
                                                   moments: ActivationMoments(rows: h, cols: cols), ridge: ridge)
        #expect(maxDifference(sequential.weight, parallel.weight) < 1e-9)
        #expect(maxDifference(sequential.bias, parallel.bias) < 1e-9)
        let e = sequential.error, f = parallel.error
        #expect(maxDifference([e.cut, e.meanShift, e.refit, e.outputVariance],
                              [f.cut, f.meanShift, f.refit, f.outputVariance]) < 1e-9)
        if set == .all {  // nothing removed either: the identity, to rounding
            #expect(maxDifference(sequential.weight, weight) < 1e-9 && maxDifference(sequential.bias, bias) < 1e-9)
            #expect(e.refit < 1e-12 && e.cut < 1e-12)
        }
    }

    @Test("removed inputs linear in the kept ones, seen through an invertible affine distortion upstream: exact")
    func affineUpstreamReproducedExactly() throws {
        var generator = SeededGenerator(seed: 0xAF)
        let rows = 49, free = 4, outputs = 6
        let base = CompensationTests.activations(rows: rows, cols: free, generator: &generator)
        let combos = (0 ..< 3).map { _ in CompensationTests.randomMatrix(free + 1, generator: &generator) }
        // p = M·h_K + c with M diagonally dominant (invertible).
        var m = CompensationTests.randomMatrix(free * free, generator: &generator)
        for i in 0 ..< free { m[i * free + i] += Double(free) }
        let shift = CompensationTests.randomMatrix(free, generator: &generator)
        let cols = free + 3
        var h = [Double](), p = [Double]()
        for t in 0 ..< rows {
            let row = Array(base[(t * free) ..< ((t + 1) * free)])
            h += row
            for c in combos { h.append(c[free] + (0 ..< free).reduce(0) { $0 + c[$1] * row[$1] }) }
            for i in 0 ..< free { p.append(shift[i] + (0 ..< free).reduce(0) { $0 + m[i * free + $1] * row[$1] }) }
        }
        let kept = Array(0 ..< free)
        let weight = CompensationTests.randomMatrix(outputs * cols, generator: &generator)
        let bias = CompensationTests.randomMatrix(outputs, generator: &generator)
        let refit = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs, inputs: cols, kept: kept,
                                                joint: Self.joint(h, p, rows: rows, cols: cols, k: free), ridge: 0)
        let empirical = Self.empiricalError(h: h, p: p, rows: rows, cols: cols, weight: weight, bias: bias,
                                            outputs: outputs, k: free, newWeight: refit.weight, newBias: refit.bias)
        #expect(empirical < 1e-18, "mean squared output error \(empirical)")
        #expect(refit.error.refit < 1e-12 && refit.error.meanShift > 1e-3)
    }

    @Test("in-sample error: refit ≤ mean shift ≤ plain cut, each as reported == empirical", arguments: [0.0, 0.01, 1.0])
    func refitNeverWorseThanMeanShift(ridge: Double) throws {
        var generator = SeededGenerator(seed: 0x3F ^ UInt64(ridge * 100))
        let rows = 41, cols = 13, outputs = 4
        for kept in [[2], [0, 5, 6, 12], Array(0 ..< 13)] {
            let (h, p) = Self.inputs(rows: rows, cols: cols, kept: kept, exactCopy: false, generator: &generator)
            let weight = CompensationTests.randomMatrix(outputs * cols, generator: &generator)
            let bias = CompensationTests.randomMatrix(outputs, generator: &generator)
            let joint = Self.joint(h, p, rows: rows, cols: cols, k: kept.count)
            let refit = try LeastSquaresRefit.refit(weight: weight, bias: bias, outputs: outputs, inputs: cols,
                                                    kept: kept, joint: joint, ridge: ridge)
            #expect(refit.error.refit <= refit.error.meanShift * (1 + 1e-12))
            #expect(refit.error.meanShift <= refit.error.cut)
            let wK = LeastSquaresRefit.columns(weight, rows: outputs, cols: cols, kept)
            let cut = Self.empiricalError(h: h, p: p, rows: rows, cols: cols, weight: weight, bias: bias,
                                          outputs: outputs, k: kept.count, newWeight: wK, newBias: bias)
            var shifted = bias
            for o in 0 ..< outputs {
                for j in 0 ..< cols { shifted[o] += weight[o * cols + j] * joint.mean[j] }
                for c in 0 ..< kept.count { shifted[o] -= wK[o * kept.count + c] * joint.mean[cols + c] }
            }
            let meanShift = Self.empiricalError(h: h, p: p, rows: rows, cols: cols, weight: weight, bias: bias,
                                                outputs: outputs, k: kept.count, newWeight: wK, newBias: shifted)
            let variance = refit.error.outputVariance
            #expect(abs(refit.error.cut * variance - cut) < 1e-9 * max(1, cut))
            #expect(abs(refit.error.meanShift * variance - meanShift) < 1e-9 * max(1, meanShift))
        }
    }

    @Test("side-by-side Gram on the device (CPU, OpenCL) == float64 moments of the joined rows, several batches")
    func sideBySideGramMatchesFloat64() throws {
        var generator = SeededGenerator(seed: 0x6B)
        let leftCols = 7, rightCols = 5, batches = [31, 23, 31]
        let rows = batches.reduce(0, +)
        let left = CompensationTests.activations(rows: rows, cols: leftCols, generator: &generator).map { Float($0) }
        let right = CompensationTests.activations(rows: rows, cols: rightCols, generator: &generator).map { Float($0) }
        let expected = Self.joint(left.map(Double.init), right.map(Double.init), rows: rows, cols: leftCols,
                                  k: rightCols)
        for (name, backend) in MaskedEqualsPrunedTests.backends {
            let scratch = try GramScratch(backend: backend)
            let accumulator = GramAccumulator(cols: leftCols + rightCols)
            var start = 0
            for count in batches {
                let l = try backend.makeBuffer(Array(left[(start * leftCols) ..< ((start + count) * leftCols)]))
                let r = try backend.makeBuffer(Array(right[(start * rightCols) ..< ((start + count) * rightCols)]))
                try accumulator.add(l, leftCols: leftCols, beside: r, rows: count, scratch: scratch)
                start += count
            }
            let moments = try accumulator.moments()
            #expect(moments.observations == rows)
            #expect(maxDifference(moments.mean, expected.mean) < 1e-5, "\(name): means")
            #expect(maxDifference(moments.covariance, expected.covariance) < 1e-5, "\(name): covariance")
        }
    }

    @Test("the layers visited: from the first changed input on, in depth order, then the classifiers")
    func layersVisited() throws {
        let config = irregularConfig(.distilled)
        var plan = KeepPlan(keepingAllOf: config)
        #expect(Compensation.sequentialLayers(of: plan, config: config).isEmpty)
        try plan.keep([0, 2, 3], in: .mlpHidden(block: 2), of: config)
        #expect(Compensation.sequentialLayers(of: plan, config: config)
            == [.mlp(block: 2), .attention(block: 3), .mlp(block: 3), .classifier(head: 0), .classifier(head: 1)])
        var residual = KeepPlan(keepingAllOf: config)
        try residual.keep(Array(0 ..< 10), in: .residual, of: config)
        #expect(Compensation.sequentialLayers(of: residual, config: config).count == 2 * config.depth + 2)
    }

    @Test("model pass: a plan that keeps everything changes nothing; the first refitted layer with nothing changed above it equals the parallel refit")
    func modelPassMatchesParallelAtTheFirstLayer() throws {
        var generator = SeededGenerator(seed: 0x51)
        let config = irregularConfig(.tokenPooling)
        let weights = try randomWeights(config, generator: &generator)
        let batch = 5
        let pixels = randomImages(config, batch: batch, generator: &generator)
        let images = try InMemoryImages(images: pixels, labels: [0, 1, 2, 3, 4],
                                        imageElements: config.inChannels * config.imageSize * config.imageSize)
        let backend = CPUBackend()
        let all = try Compensation.compensateSequentially(weights, plan: KeepPlan(keepingAllOf: config),
                                                          backend: backend, images: images, batchSize: 2)
        #expect(all.records.isEmpty && all.weights == weights)
        var plan = KeepPlan(keepingAllOf: config)
        try plan.keep([1, 4, 5, 9, 12], in: .mlpHidden(block: 1), of: config)
        let sequential = try Compensation.compensateSequentially(weights, plan: plan, backend: backend, images: images,
                                                                 batchSize: 2, ridge: 0.01)
        let parallel = try Compensation.compensate(weights, plan: plan, backend: backend, images: images, batchSize: 2,
                                                   ridge: 0.01)
        #expect(sequential.records.map(\.layer)
            == ["blocks.1.mlp.fc2", "blocks.2.attn.proj", "blocks.2.mlp.fc2", "blocks.3.attn.proj",
                "blocks.3.mlp.fc2", "head"])
        for name in ["blocks.1.mlp.fc2.weight", "blocks.1.mlp.fc2.bias"] {
            let s = try #require(sequential.weights[name]).values.map(Double.init)
            let p = try #require(parallel.weights[name]).values.map(Double.init)
            #expect(maxDifference(s, p) < 1e-3 * max(1, p.map(abs).max() ?? 0), "\(name)")
        }
        for record in sequential.records {
            #expect(record.error.refit <= record.error.meanShift * (1 + 1e-6) + 1e-9, "\(record.layer)")
        }
    }

    @Test("pruned == masked + sequential compensation (float64 reference): every refit lands where surgery keeps it",
          arguments: [SurgeryInvariantTests.Spaces.residual, .all])
    func prunedEqualsMaskedCompensated(spaces: SurgeryInvariantTests.Spaces) throws {
        var generator = SeededGenerator(seed: 0xC5 ^ spaces.rawValue.hashStable)
        let config = irregularConfig(.distilled)
        let weights = try randomWeights(config, generator: &generator)
        let plan = try SurgeryInvariantTests.randomPlan(config, spaces, generator: &generator)
        let batch = 4
        let pixels = randomImages(config, batch: batch, generator: &generator)
        let images = try InMemoryImages(images: pixels, labels: [0, 1, 2, 3],
                                        imageElements: config.inChannels * config.imageSize * config.imageSize)
        let (compensated, records) = try Compensation.compensateSequentially(
            weights, plan: plan, backend: CPUBackend(), images: images, batchSize: 3, ridge: 0.01)
        #expect(records.count == Compensation.sequentialLayers(of: plan, config: config).count)
        let pruned = try Surgery.prune(compensated, plan: plan)
        let doubles = pixels.map(Double.init)
        let masked = reference(compensated, masks: masks(for: plan, of: config)).logits(doubles, batch: batch)
        let small = reference(pruned).logits(doubles, batch: batch)
        #expect(maxDifference(masked.flatMap { $0 }, small.flatMap { $0 }) < 1e-9, "\(spaces)")
    }
}
