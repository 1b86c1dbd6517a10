import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import Dispatch

/// One GEMM of a model's forward pass: a name, the shape, and how often it runs per forward (blocks).
struct ForwardGemm {
    let name: String
    let spec: GemmSpec
}

/// Every matrix product of one forward pass at `batch`, with the same shapes, transposes and leading dimensions as
/// the model layer uses (attention reads q/k/v in place from the fused qkv rows, one strided batch per head).
func forwardGemms(_ c: ViTConfig, batch: Int) -> [ForwardGemm] {
    let rows = batch * c.tokens
    let width = c.residualWidth
    var gemms = [ForwardGemm(name: "patch_embed",
                             spec: GemmSpec(m: batch * c.patchCount, n: width, k: c.patchElements, transB: true))]
    for (index, block) in c.blocks.enumerated() {
        let n = c.tokens
        let qkvFeatures = block.qkvRows
        let merged = block.attentionWidth
        gemms.append(ForwardGemm(name: "blocks.\(index).qkv",
                                 spec: GemmSpec(m: rows, n: qkvFeatures, k: width, transB: true)))
        for head in 0..<block.heads {
            var scores = GemmSpec(m: n, n: n, k: block.qkDim, transB: true)
            scores.lda = qkvFeatures
            scores.ldb = qkvFeatures
            scores.offsetA = head * block.qkDim
            scores.offsetB = block.heads * block.qkDim + head * block.qkDim
            scores.strideA = n * qkvFeatures
            scores.strideB = n * qkvFeatures
            scores.strideC = n * n
            scores.batch = batch
            gemms.append(ForwardGemm(name: "blocks.\(index).q·kᵀ", spec: scores))
            var weighted = GemmSpec(m: n, n: block.vDim, k: n)
            weighted.ldb = qkvFeatures
            weighted.ldc = merged
            weighted.offsetB = 2 * block.heads * block.qkDim + head * block.vDim
            weighted.offsetC = head * block.vDim
            weighted.strideA = n * n
            weighted.strideB = n * qkvFeatures
            weighted.strideC = n * merged
            weighted.batch = batch
            gemms.append(ForwardGemm(name: "blocks.\(index).p·v", spec: weighted))
        }
        gemms.append(ForwardGemm(name: "blocks.\(index).proj",
                                 spec: GemmSpec(m: rows, n: width, k: merged, transB: true)))
        gemms.append(ForwardGemm(name: "blocks.\(index).fc1",
                                 spec: GemmSpec(m: rows, n: block.mlpHidden, k: width, transB: true)))
        gemms.append(ForwardGemm(name: "blocks.\(index).fc2",
                                 spec: GemmSpec(m: rows, n: width, k: block.mlpHidden, transB: true)))
    }
    for _ in 0..<(c.distillationToken ? 2 : 1) {
        gemms.append(ForwardGemm(name: "head", spec: GemmSpec(m: batch, n: c.classes, k: width, transB: true)))
    }
    return gemms
}

/// Bare OpenBLAS time of one strided batch: the best of (a) a loop of calls with OpenBLAS's own threads and (b) for
/// a batch, one single-threaded OpenBLAS per core over half the batch each. (b) is what the CPU backend does; (a) is
/// what a plain BLAS user would write; the bound takes the faster, so it is not weakened by OpenBLAS's poor
/// threading of small products.
func bareSeconds(_ spec: GemmSpec, repeats: Int, threads: Int) -> Double {
    let bare = BareOpenBLASGemm(spec)
    let looped = median(repeats: repeats) { bare.run() }
    guard spec.batch >= threads, threads > 1 else { return looped }
    let (countA, countB, countC) = sizes(spec)
    let a = randomValues(countA, seed: 1), b = randomValues(countB, seed: 2)
    var c = [Float](repeating: 0, count: countC)
    OpenBLAS.threads = 1
    defer { OpenBLAS.threads = threads }
    let split = a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                let (pa, pb, pc) = (a.baseAddress!, b.baseAddress!, c.baseAddress!)
                return median(repeats: repeats) {
                    DispatchQueue.concurrentPerform(iterations: threads) { worker in
                        for i in spec.batch * worker / threads ..< spec.batch * (worker + 1) / threads {
                            OpenBLAS.sgemm(transA: spec.transA, transB: spec.transB, m: spec.m, n: spec.n,
                                           k: spec.k, alpha: spec.alpha, a: pa + spec.offsetA + i * spec.strideA,
                                           lda: spec.lda, b: pb + spec.offsetB + i * spec.strideB, ldb: spec.ldb,
                                           beta: spec.beta, c: pc + spec.offsetC + i * spec.strideC,
                                           ldc: spec.ldc)
                        }
                    }
                }
            }
        }
    }
    return min(looped, split)
}

func modelBound(path: String, heads: Int?, batch: Int, repeats: Int, json: Bool) throws {
    let config = try ViTWeights.load(path: path, heads: heads).config
    let threads = OpenBLAS.threads
    // Identical shapes (every block of an unpruned model) are timed once.
    var timed: [String: Double] = [:]
    var totalSeconds = 0.0
    var totalFlops = 0.0
    var perKind: [(String, Double, Double)] = []
    for gemm in forwardGemms(config, batch: batch) {
        let key = "\(gemm.spec)"
        let seconds = timed[key] ?? bareSeconds(gemm.spec, repeats: repeats, threads: threads)
        timed[key] = seconds
        totalSeconds += seconds
        totalFlops += gemm.spec.flops
        let kind = gemm.name.split(separator: ".").last.map(String.init) ?? gemm.name
        if let i = perKind.firstIndex(where: { $0.0 == kind }) {
            perKind[i].1 += seconds
            perKind[i].2 += gemm.spec.flops
        } else {
            perKind.append((kind, seconds, gemm.spec.flops))
        }
    }
    let macFlops = 2 * Double(config.cost().macs) * Double(batch)
    let gflops = totalFlops / totalSeconds / 1e9
    let boundImages = Double(batch) / (macFlops / (gflops * 1e9))
    if json {
        print("{\"model\": \"\(path)\", \"batch\": \(batch), \"threads\": \(threads), "
              + "\"gemm_seconds\": \(totalSeconds), \"gemm_gflops_per_second\": \(gflops), "
              + "\"model_gflop\": \(macFlops / 1e9), \"bound_images_per_second\": \(boundImages), "
              + "\"bound_latency_ms\": \(1000 * macFlops / (gflops * 1e9))}")
        return
    }
    print("bare OpenBLAS (\(OpenBLAS.coreName), \(threads) threads) at the GEMM shapes of \(path), batch \(batch)")
    for (kind, seconds, flops) in perKind {
        print("  \(kind.padding(toLength: 14))\(pad(format(1000 * seconds, 2), 10)) ms\(pad(format(flops / seconds / 1e9), 8)) GFLOP/s")
    }
    print("  total GEMM \(format(1000 * totalSeconds, 2)) ms, \(format(gflops)) GFLOP/s over \(format(totalFlops / 1e9, 2)) GFLOP")
    print("  bound: \(format(macFlops / 1e9, 2)) GFLOP (2·MACs) / \(format(gflops)) GFLOP/s = "
          + "\(format(1000 * macFlops / (gflops * 1e9), 2)) ms, \(format(boundImages)) images/s")
}
