import Foundation
import Testing
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeSupport
import ViTForgeTestBasics
import ViTForgeTestSupport
import ViTForgeTrain

/// Vulcan (METHODS.md §3): the budget arithmetic, k-means, the constraint terms' gradients, the lossless surgery and
/// a killed-and-resumed post-training.
@Suite("Vulcan")
struct VulcanTests {
    /// Uniform heads (Vulcan starts from a general model), odd sizes, q/k ≠ v, a custom scale in one block.
    static func config(qkvBias: Bool = true, pooling: Pooling = .token) -> ViTConfig {
        ViTConfig(imageSize: 9, patchSize: 3, inChannels: 1, classes: 5, residualWidth: 13, blocks: [
            BlockConfig(heads: 2, qkDim: 11, vDim: 9, mlpHidden: 19),
            BlockConfig(heads: 3, qkDim: 9, vDim: 10, mlpHidden: 17, attentionScale: 0.31),
        ], qkvBias: qkvBias, pooling: pooling, classToken: true)
    }

    // MARK: Budget

    @Test("effective rank, the harmonic rate split and the multiple-of-8 rounding against float64 references")
    func budgetArithmetic() {
        // erank = exp(entropy of σ/Σσ): k equal values give k, one value 1, zeros count for nothing.
        #expect(abs(VulcanBudget.effectiveRank([2, 2, 2, 2, 2]) - 5) < 1e-12)
        #expect(abs(VulcanBudget.effectiveRank([7, 0, 0]) - 1) < 1e-12)
        var generator = SeededGenerator(seed: 131)
        let sigmas = (0 ..< 13).map { _ in abs(generator.uniform()) + 0.01 }
        let total = sigmas.reduce(0, +)
        let entropy = sigmas.reduce(0.0) { $0 - ($1 / total) * log($1 / total) }
        #expect(abs(VulcanBudget.effectiveRank(sigmas) - exp(entropy)) < 1e-12)

        // Rounding: down to a multiple of 8, at least 8, at most the width; widths ≤ 8 stay whole.
        for (x, width, expected) in [(37.9, 64, 32), (3.0, 64, 8), (70.0, 64, 64), (5.0, 7, 7), (-3.0, 48, 8),
                                     (47.99, 48, 40), (48.0, 48, 48)] {
            #expect(VulcanBudget.roundDown(x, width: width, kind: .mlpHidden(block: 0)) == expected,
                    "roundDown(\(x), \(width))")
        }

        // Attention dims: r_l = R·L/(Σ 1/e_j)/e_l, split by the other product's share, ⌊d(1 − r)⌋ rounded.
        let qk = (0 ..< 7).map { _ in 10 + 40 * abs(generator.uniform()) }
        let vo = (0 ..< 7).map { _ in 10 + 40 * abs(generator.uniform()) }
        let dims = [64, 64, 48, 64, 96, 64, 37]
        for ratio in [0.3, 0.6, 0.8] {
            let got = VulcanBudget.attentionDims(qkRanks: qk, voRanks: vo, qkDims: dims, vDims: dims, ratio: ratio)
            var harmonic = 0.0
            for l in 0 ..< 7 { harmonic += 1 / (qk[l] + vo[l]) }
            for l in 0 ..< 7 {
                let e = qk[l] + vo[l]
                let rate = ratio * 7 / harmonic / e
                func reference(_ share: Double) -> Int {
                    let kept = floor(Double(dims[l]) * (1 - rate * 2 * share / e))
                    return min(dims[l], max(8, 8 * Int(floor(max(0, kept) / 8))))
                }
                #expect(got[l].qk == reference(vo[l]) && got[l].v == reference(qk[l]), "R \(ratio), layer \(l)")
            }
            // The rates' mean is R (before rounding): the harmonic weighting's defining property.
            var rateSum = 0.0
            for l in 0 ..< 7 {
                let e: Double = qk[l] + vo[l]
                rateSum += ratio * 7 / harmonic / e
            }
            #expect(abs(rateSum / 7 - ratio) < 1e-12)
        }

        // MLP widths: z-scores per layer, one global threshold on the ⌊R·N⌋-th smallest, then rounding.
        let linear: [Double] = (0 ..< 40).map { Double($0) }
        let squares: [Double] = (0 ..< 40).map { Double($0 * $0) }
        let waves: [Double] = (0 ..< 24).map { sin(Double($0)) }
        let scores = [linear, squares, waves]
        let ratio = 0.45
        let z = scores.map(VulcanBudget.zScores)
        let all = z.flatMap { $0 }.sorted()
        let threshold = all[Int(ratio * Double(all.count)) - 1]
        let expected = z.map { layer in
            VulcanBudget.roundDown(Double(layer.filter { $0 > threshold }.count), width: layer.count,
                                   kind: .mlpHidden(block: 0))
        }
        #expect(VulcanBudget.mlpWidths(scores: scores, ratio: ratio) == expected)
        #expect(VulcanBudget.mlpWidths(scores: scores, ratio: 0) == [40, 40, 24])
        for layer in z {
            let mean = layer.reduce(0, +) / Double(layer.count)
            let variance = layer.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(layer.count)
            #expect(abs(mean) < 1e-12 && abs(variance - 1) < 1e-12)
        }
    }

    @Test("--target-macs / --target-params: R solved by bisection keeps at most the target, close to it")
    func targetSolvesRatio() throws {
        let config = ViTConfig.timm(imageSize: 28, patchSize: 4, inChannels: 1, classes: 10, embedDim: 96, depth: 4,
                                    heads: 2)
        var generator = SeededGenerator(seed: 61)
        let scores = config.blocks.map { block in (0 ..< block.mlpHidden).map { _ in generator.uniform() } }
        let qk = config.blocks.map { _ in 20 + 10 * abs(generator.uniform()) }
        let vo = config.blocks.map { _ in 20 + 10 * abs(generator.uniform()) }
        let widthsAt = { (ratio: Double) in
            Vulcan.widths(config: config, mlpScores: scores, qkRanks: qk, voRanks: vo, ratio: ratio)
        }
        let vulcan = Vulcan(options: .init(pruneRatio: nil))
        for target in [Budget.Target.macs(0.5), .params(0.35)] {
            let ratio = try vulcan.solveRatio(Budget(target: target), config: config, widthsAt: widthsAt)
            let cost = Vulcan.prunedConfig(config, widths: widthsAt(ratio)).cost(), full = config.cost()
            let kept: Double, wanted: Double
            switch target {
            case let .macs(f): (kept, wanted) = (Double(cost.macs) / Double(full.macs), f)
            case let .params(f): (kept, wanted) = (Double(cost.parameters) / Double(full.parameters), f)
            default: (kept, wanted) = (1, 0)
            }
            #expect(kept <= wanted && kept > wanted - 0.05, "\(target): R \(ratio) keeps \(kept)")
        }
        #expect(throws: PruneError.self) {
            try vulcan.solveRatio(Budget(target: .macs(0.01)), config: config, widthsAt: widthsAt)
        }
    }

    @Test("--round-to table / K: each width is the table's (or K's) rounding down of R's count; by default 8's")
    func roundingChoices() throws {
        // fm-vit-b: 4 blocks of 4 heads × 32/32, MLP 256, width 128.
        let config = try LatencyTableTests.fmVitB.get()
        var generator = SeededGenerator(seed: 0x5C1)
        let scores = config.blocks.map { block in (0 ..< block.mlpHidden).map { _ in generator.uniform() } }
        let qk = config.blocks.map { _ in 20 + 10 * abs(generator.uniform()) }
        let vo = config.blocks.map { _ in 20 + 10 * abs(generator.uniform()) }
        // Multiples of 12 cost 1 per channel, every other width 1.5: the table's rule picks multiples of 12.
        let table = try LatencyTableTests.syntheticTable(config) { $0 % 12 == 0 ? 1 : 1.5 }
        let tabled = WidthRounding.table(LoadedLatencyTable(table: table, path: "t.json", hash: "h"))
        func widths(_ ratio: Double, _ rounding: WidthRounding? = nil) -> [VulcanBudget.BlockWidths] {
            rounding.map { Vulcan.widths(config: config, mlpScores: scores, qkRanks: qk, voRanks: vo, ratio: ratio,
                                         rounding: $0) }
                ?? Vulcan.widths(config: config, mlpScores: scores, qkRanks: qk, voRanks: vo, ratio: ratio)
        }
        var movedOffEights = false
        for ratio in [0.3, 0.45, 0.6] {
            // The counts R gives, unrounded (--round-to 1), against which every rounding is checked.
            let counts = widths(ratio, .multiple(1))
            let byTable = widths(ratio, tabled), bySixteen = widths(ratio, .multiple(16)), byDefault = widths(ratio)
            #expect(byDefault == widths(ratio, .multiple(8)))
            for (b, count) in counts.enumerated() {
                let fields: [(Int, Int, Int, Int, Int, SpaceKind)] = [
                    (count.mlpHidden, byTable[b].mlpHidden, bySixteen[b].mlpHidden, byDefault[b].mlpHidden,
                     config.blocks[b].mlpHidden, .mlpHidden(block: b)),
                    (count.qkDim, byTable[b].qkDim, bySixteen[b].qkDim, byDefault[b].qkDim, config.blocks[b].qkDim,
                     .qkDims(block: b)),
                    (count.vDim, byTable[b].vDim, bySixteen[b].vDim, byDefault[b].vDim, config.blocks[b].vDim,
                     .vDims(block: b)),
                ]
                for (asked, table16, sixteen, eight, size, kind) in fields {
                    let fastest = WidthRounding.fastestWidth(asked: asked) { table.milliseconds(kind, width: $0) }
                    #expect(table16 == fastest && fastest <= asked, "R \(ratio) \(kind): \(asked) → \(table16)")
                    #expect(sixteen == min(size, max(16, asked / 16 * 16)), "R \(ratio) \(kind): \(sixteen)")
                    #expect(eight == min(size, max(8, asked / 8 * 8)), "R \(ratio) \(kind): \(eight)")
                    movedOffEights = movedOffEights || (table16 % 8 != 0 && table16 != asked)
                }
            }
        }
        #expect(movedOffEights, "the made-up table should give some width that is no multiple of 8")

        // A target is met on the rounded widths: at most the target, close to it.
        let vulcan = Vulcan(options: .init(pruneRatio: nil))
        for rounding in [tabled, .multiple(16), .multiple(1)] {
            let widthsAt = { (ratio: Double) in widths(ratio, rounding) }
            let ratio = try vulcan.solveRatio(Budget(target: .macs(0.5), rounding: rounding), config: config,
                                              widthsAt: widthsAt)
            let kept = Double(Vulcan.prunedConfig(config, widths: widthsAt(ratio)).cost().macs)
                / Double(config.cost().macs)
            #expect(kept <= 0.5 && kept > 0.45, "\(rounding.summary): R \(ratio) keeps \(kept)")
        }
        // vulcan no longer refuses a table; its default rounding is the paper's.
        #expect(vulcan.problem(with: Budget(target: .macs(0.5), rounding: tabled), epochs: 0) == nil)
        #expect(Vulcan.defaultRounding == .multiple(8) && Budget().requestedRounding == nil)
    }

    @Test("k-means is reproducible by seed, fills every cluster and recovers separated groups")
    func kMeans() {
        var generator = SeededGenerator(seed: 7)
        let (count, dimension, k) = (61, 13, 5)
        let centres = (0 ..< k * dimension).map { _ in 10 * generator.uniform() }
        let truth = (0 ..< count).map { $0 % k }
        let points = (0 ..< count * dimension).map { i in centres[truth[i / dimension] * dimension + i % dimension]
            + 0.01 * generator.uniform() }
        let first = KMeans.cluster(points, count: count, dimension: dimension, k: k, seed: 3)
        #expect(KMeans.cluster(points, count: count, dimension: dimension, k: k, seed: 3) == first)
        // The same partition as the truth, up to the clusters' numbering.
        var mapping: [Int: Int] = [:]
        for (point, cluster) in first.enumerated() { mapping[truth[point], default: cluster] = mapping[truth[point]] ?? cluster }
        #expect(first.enumerated().allSatisfy { mapping[truth[$0.offset]] == $0.element })
        // Random points, more clusters than structure: all k non-empty, the seed decides.
        let noise = (0 ..< count * dimension).map { _ in generator.uniform() }
        let a = KMeans.cluster(noise, count: count, dimension: dimension, k: 23, seed: 1)
        let b = KMeans.cluster(noise, count: count, dimension: dimension, k: 23, seed: 2)
        #expect(Set(a).count == 23 && Set(b).count == 23)
        #expect(a == KMeans.cluster(noise, count: count, dimension: dimension, k: 23, seed: 1))
        #expect(a != b, "two seeds gave the same clustering of random points")
    }

    // MARK: Constraint terms

    /// The penalty's value in float64 from the weights (the term's definition, §3.b step 3).
    static func penaltyValue(_ p: [String: [Double]], config: ViTConfig, clusters: [[VulcanSurgery.Cluster]],
                             widths: [VulcanBudget.BlockWidths], lambda: (Double, Double)) throws -> Double {
        var l1 = 0.0, l2 = 0.0
        let width = config.residualWidth
        let heads = Double(config.blocks.reduce(0) { $0 + $1.heads })
        for (b, block) in config.blocks.enumerated() {
            let fc1 = p["blocks.\(b).mlp.fc1.weight"]!, bias = p["blocks.\(b).mlp.fc1.bias"]!
            let merged = clusters[b].filter { $0.members.count > 1 }
            for cluster in merged {
                for j in cluster.members where j != cluster.anchor {
                    var d = (0 ..< width).map { fc1[j * width + $0] - fc1[cluster.anchor * width + $0] }
                    d.append(bias[j] - bias[cluster.anchor])
                    l1 += d.reduce(0) { $0 + abs($1) } / Double(merged.count)
                    l2 += d.reduce(0) { $0 + $1 * $1 } / Double(merged.count)
                }
            }
            for head in VulcanBudget.headMatrices(p, config: config, block: b) {
                for (matrix, kept) in [(head.q, widths[b].qkDim), (head.v, widths[b].vDim)] {
                    let sigma = try LAPACK.svd(matrix.values, rows: matrix.rows, cols: matrix.cols).s
                    for s in sigma.dropFirst(kept) {
                        l1 += s / heads
                        l2 += s * s / heads
                    }
                }
            }
            _ = block
        }
        return lambda.0 * l1 + lambda.1 * l2
    }

    @Test("CCNC + TNNR gradient against central differences of the float64 penalty, on every backend (OpenCL too)")
    func penaltyGradient() throws {
        for qkvBias in [true, false] {
          for (label, backend) in MaskedEqualsPrunedTests.backends {
            let config = Self.config(qkvBias: qkvBias)
            var generator = SeededGenerator(seed: qkvBias ? 41 : 43)  // the same weights on every backend
            let weights = try randomWeights(config, generator: &generator)
            let widths = [VulcanBudget.BlockWidths(mlpHidden: 7, qkDim: 6, vDim: 4),
                          VulcanBudget.BlockWidths(mlpHidden: 9, qkDim: 5, vDim: 7)]
            let scores = config.blocks.map { block in (0 ..< block.mlpHidden).map { _ in generator.uniform() } }
            let clusters = Vulcan.clusters(weights, widths: widths, scores: scores, seed: 5, iterations: 50)
            #expect(clusters.map(\.count) == [7, 9])
            let lambda = (0.7, 1.9)
            let model = try VisionTransformer(weights: weights, backend: backend)
            try model.zeroGradients()
            let multipliers = try VulcanMultipliers(backend: backend, lambda1: Float(lambda.0), lambda2: Float(lambda.1))
            let penalty = try VulcanPenalty(multipliers: multipliers, config: config, clusters: clusters, widths: widths,
                                            backend: backend)
            let value = try penalty.addGradient(model: model)
            let doubles = VulcanSurgery.doubles(weights)
            let reference = try Self.penaltyValue(doubles, config: config, clusters: clusters, widths: widths,
                                                  lambda: lambda)
            #expect(abs(value - reference) <= 1e-4 * abs(reference), "value \(value) vs \(reference)")
            // ∂L/∂λ = the constraint values.
            let constraints = penalty.last
            #expect(abs(Double(try backend.read(multipliers.gradients[0])[0]) - constraints.collapseL1 - constraints.tailL1)
                    <= 1e-4 * (constraints.collapseL1 + constraints.tailL1))
            var names = ["blocks.0.attn.qkv.weight", "blocks.1.attn.qkv.weight", "blocks.0.mlp.fc1.weight",
                         "blocks.1.mlp.fc1.bias"]
            if qkvBias { names.append("blocks.1.attn.qkv.bias") }
            for name in names {
                let analytic = try backend.read(model.gradients[name]!).map(Double.init)
                let scale = analytic.map(abs).max() ?? 1
                #expect(scale > 0, "\(name): no gradient")
                for _ in 0 ..< 12 {
                    let i = generator.below(analytic.count)
                    let h = 1e-6
                    var plus = doubles, minus = doubles
                    plus[name]![i] += h
                    minus[name]![i] -= h
                    let numeric = (try Self.penaltyValue(plus, config: config, clusters: clusters, widths: widths, lambda: lambda)
                        - Self.penaltyValue(minus, config: config, clusters: clusters, widths: widths, lambda: lambda)) / (2 * h)
                    #expect(abs(numeric - analytic[i]) <= 2e-3 * scale,
                            "\(label) \(name)[\(i)] bias \(qkvBias): analytic \(analytic[i]), numeric \(numeric)")
                }
            }
          }
        }
    }

    // MARK: Surgery

    /// Random float64 parameters of `config` that meet the constraints exactly: every cluster's members equal to its
    /// anchor (fc1 row and bias), every head's Ŵ_Q and Ŵ_V truncated to the block's kept rank.
    static func constrained(_ config: ViTConfig, widths: [VulcanBudget.BlockWidths], seed: UInt64) throws
        -> (parameters: [String: [Double]], clusters: [[VulcanSurgery.Cluster]]) {
        var generator = SeededGenerator(seed: seed)
        let weights = try randomWeights(config, generator: &generator)
        var p = VulcanSurgery.doubles(weights)
        let width = config.residualWidth
        var clusters: [[VulcanSurgery.Cluster]] = []
        for (b, block) in config.blocks.enumerated() {
            // Clusters: a random partition into widths[b].mlpHidden non-empty groups, a random anchor each.
            let order = (0 ..< block.mlpHidden).shuffled(using: &generator)
            var groups = order.prefix(widths[b].mlpHidden).map { [$0] }
            for neuron in order.dropFirst(widths[b].mlpHidden) { groups[generator.below(groups.count)].append(neuron) }
            let blockClusters = groups.map { members in
                VulcanSurgery.Cluster(anchor: members[generator.below(members.count)], members: members.sorted())
            }
            for cluster in blockClusters {
                for j in cluster.members where j != cluster.anchor {
                    for c in 0 ..< width {
                        p["blocks.\(b).mlp.fc1.weight"]![j * width + c] = p["blocks.\(b).mlp.fc1.weight"]![cluster.anchor * width + c]
                    }
                    p["blocks.\(b).mlp.fc1.bias"]![j] = p["blocks.\(b).mlp.fc1.bias"]![cluster.anchor]
                }
            }
            clusters.append(blockClusters)
            // Rank truncation of each head's augmented Q and V (bias column included).
            let layout = QKVLayout(block)
            for h in 0 ..< block.heads {
                for (firstRow, rows, kept) in [(layout.qRow(head: h, dim: 0), block.qkDim, widths[b].qkDim),
                                               (layout.vRow(head: h, dim: 0), block.vDim, widths[b].vDim)] {
                    let head = VulcanBudget.headMatrices(p, config: config, block: b)[h]
                    let matrix = firstRow == layout.qRow(head: h, dim: 0) ? head.q : head.v
                    let svd = try LAPACK.svd(matrix.values, rows: rows, cols: width + 1)
                    let k = svd.s.count
                    for i in 0 ..< rows {
                        for j in 0 ... width {
                            var sum = 0.0
                            for r in 0 ..< min(kept, k) { sum += svd.u[i * k + r] * svd.s[r] * svd.vt[r * (width + 1) + j] }
                            if j < width { p["blocks.\(b).attn.qkv.weight"]![(firstRow + i) * width + j] = sum }
                            else if config.qkvBias { p["blocks.\(b).attn.qkv.bias"]![firstRow + i] = sum }
                        }
                    }
                }
            }
        }
        return (p, clusters)
    }

    @Test("surgery is lossless in float64 once the constraints hold (√(r/d) fold, q·k ≠ v·o dims, --trim-head)")
    func losslessSurgery() throws {
        for (qkvBias, pooling) in [(true, Pooling.token), (false, Pooling.avg)] {
            let config = Self.config(qkvBias: qkvBias, pooling: pooling)
            let widths = [VulcanBudget.BlockWidths(mlpHidden: 8, qkDim: 8, vDim: 4),
                          VulcanBudget.BlockWidths(mlpHidden: 5, qkDim: 3, vDim: 8)]
            let (parameters, clusters) = try Self.constrained(config, widths: widths, seed: qkvBias ? 17 : 19)
            var generator = SeededGenerator(seed: 23)
            let batch = 3
            let images = (0 ..< batch * 81).map { _ in generator.uniform() }
            let before = ReferenceViT(config: config, parameters: parameters).logits(images, batch: batch)
            let scale = before.flatMap { $0 }.map(abs).max() ?? 1

            let (pruned, prunedParameters) = try VulcanSurgery.apply(parameters, config: config, clusters: clusters,
                                                                     widths: widths)
            #expect(pruned.blocks.map(\.mlpHidden) == [8, 5] && pruned.blocks.map(\.qkDim) == [8, 3]
                    && pruned.blocks.map(\.vDim) == [4, 8])
            #expect(pruned.blocks.map(\.attentionScale) == [1 / 8.0.squareRoot(), 1 / 3.0.squareRoot()])
            #expect(pruned.problem() == nil && pruned.cost().parameters < config.cost().parameters)
            let after = ReferenceViT(config: pruned, parameters: prunedParameters).logits(images, batch: batch)
            let error = maxDifference(before.flatMap { $0 }, after.flatMap { $0 }) / scale
            #expect(error <= 1e-9, "bias \(qkvBias): relative error \(error)")

            // Without the fold the scores would be off by √(r/d): the test would see it.
            var unfolded = pruned
            unfolded.blocks[0].attentionScale = 1 / 11.0.squareRoot()
            let wrong = ReferenceViT(config: unfolded, parameters: prunedParameters).logits(images, batch: batch)
            #expect(maxDifference(before.flatMap { $0 }, wrong.flatMap { $0 }) / scale > 1e-6)

            // --trim-head: the subset's rows, in the given order, and their ids in the config.
            let subset = [3, 0, 4]
            let (trimmed, trimmedParameters) = try VulcanSurgery.apply(parameters, config: config, clusters: clusters,
                                                                       widths: widths, trimHead: subset)
            #expect(trimmed.classes == 3 && trimmed.classIds == subset && trimmed.problem() == nil)
            let trimmedLogits = ReferenceViT(config: trimmed, parameters: trimmedParameters).logits(images, batch: batch)
            for (full, cut) in zip(before, trimmedLogits) {
                #expect(maxDifference(subset.map { full[$0] }, cut) / scale <= 1e-9)
            }
            // The ids survive the file: a saved and loaded model keeps them.
            let weights = try VulcanSurgery.apply(try ViTWeights(config: config, tensors: Dictionary(uniqueKeysWithValues:
                config.parameterSpecs().map { ($0.name, HostTensor(shape: $0.shape, values: parameters[$0.name]!.map { Float($0) })) })),
                clusters: clusters, widths: widths, trimHead: subset)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("vulcan-\(UUID()).safetensors").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            try weights.save(to: path)
            #expect(try ViTWeights.load(path: path).config.classIds == subset)
        }
    }

    @Test("--trim-head keeps the names of the classes it keeps, in the trimmed order, on top of an earlier trim")
    func trimKeepsNames() throws {
        var config = Self.config()
        config.classNames = ["ant", "bee", "cat", "dog", "eel"]
        var parameters: [String: [Double]] = [:]
        for head in ["head"] {
            parameters[head + ".weight"] = (0 ..< 5 * 13).map(Double.init)
            parameters[head + ".bias"] = (0 ..< 5).map(Double.init)
        }
        try VulcanSurgery.trim(&parameters, config: &config, to: [4, 1, 2])
        #expect(config.classNames == ["eel", "bee", "cat"] && config.classIds == [4, 1, 2] && config.problem() == nil)
        #expect(parameters["head.bias"] == [4, 1, 2])
        // Trimming a trimmed head addresses classes by their data-set ids, and names follow.
        try VulcanSurgery.trim(&parameters, config: &config, to: [2, 4])
        #expect(config.classNames == ["cat", "eel"] && config.classIds == [2, 4] && parameters["head.bias"] == [2, 4])
    }

    // MARK: Post-training through the pipeline

    static func pipeline(checkpoint: String? = nil, resume: Bool = false, evalEvery: Int = 3) -> PruningPipeline {
        var phase = TrainingPhase(name: "vulcan", epochs: 2, batchSize: 8, learningRate: 1e-3, distill: false,
                                  augmentation: .none, seed: 5, checkpointPath: checkpoint, checkpointEvery: 1,
                                  resume: resume)
        phase.stopsOnInterrupt = false
        var options = Vulcan.Options(classes: [0, 2, 3], pruneRatio: 0.5, evalEvery: evalEvery,
                                     validationFraction: 0.3, trimHead: true)
        options.compareFinetunedBase = true
        let vulcan = Vulcan(options: options)
        return PruningPipeline(method: vulcan, budget: Budget(), batchSize: 8, methodTraining: phase,
                               latencyBatches: [2], seed: 5)
    }

    static func run(_ pipeline: PruningPipeline, stopWhen: ((TrainingProgress) -> Bool)? = nil) throws
        -> PruningPipeline.Outcome {
        var generator = SeededGenerator(seed: 99)
        let config = ViTConfig(imageSize: 9, patchSize: 3, inChannels: 1, classes: 5, residualWidth: 21, blocks: [
            BlockConfig(heads: 2, qkDim: 11, vDim: 11, mlpHidden: 37),
            BlockConfig(heads: 2, qkDim: 11, vDim: 11, mlpHidden: 29),
        ])
        let original = try randomWeights(config, generator: &generator)
        let data = try MethodPlatformTests.data()
        let subset = DatasetSplits(training: try data.training.subset(classes: [0, 2, 3], remap: false),
                                   test: try data.test?.subset(classes: [0, 2, 3], remap: false))
        return try pipeline.run(original: original, originalPath: "original", prunedPath: "pruned", data: subset,
                                backend: CPUBackend(), command: "test", version: "test",
                                hooks: .init(log: { _ in }, stopWhen: stopWhen))
    }

    @Test("post-training through the pipeline: multipliers rise, constraints recorded; killed and resumed it ends identical")
    func postTrainingResume() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-vulcan-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let first = try Self.run(Self.pipeline())
        let report = try #require(first.report)
        let series = try #require(report.methodSeries)
        let lambda1 = try #require(series["lambda1"])
        #expect(lambda1.count >= 2 && zip(lambda1, lambda1.dropFirst()).allSatisfy { $0 < $1 }, "λ1 \(lambda1)")
        #expect(series["validation_accuracy_pruned"]?.allSatisfy { $0.isFinite } == true)
        #expect(first.weights.config.classIds == [0, 2, 3] && first.weights.config.classes == 3)
        #expect(report.methodMetrics?["base_accuracy_restricted"] != nil)
        #expect(report.methodMetrics?["finetuned_base_accuracy_restricted"] != nil)
        #expect(first.weights.config.blocks.allSatisfy { $0.qkDim == 8 && $0.vDim == 8 })

        // Without --eval-every the report has no validation series and still encodes (JSON has no NaN).
        let unvalidated = try #require(try Self.run(Self.pipeline(evalEvery: 0)).report)
        #expect(unvalidated.methodSeries?["validation_accuracy_pruned"] == nil)
        _ = try unvalidated.jsonData()
        _ = try report.jsonData()

        let checkpoint = folder.appendingPathComponent("vulcan.checkpoint.safetensors").path
        let stopped = try Self.run(Self.pipeline(checkpoint: checkpoint)) { $0.step == 4 }
        #expect(stopped.stopped)
        let resumed = try Self.run(Self.pipeline(checkpoint: checkpoint, resume: true))
        #expect(resumed.weights == first.weights, "a resumed post-training differs from the uninterrupted one")
        #expect(resumed.report?.methodSeries == report.methodSeries)
        #expect(resumed.report?.methodMetrics?["finetuned_base_accuracy"] == report.methodMetrics?["finetuned_base_accuracy"])
    }
}
