#if canImport(Glibc)
import Glibc
#endif

// AdamW, and the gather/scatter pair used by surgery and token selection.

extension CPUBackend {
    public func uncheckedAdamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                                   hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws
    {
        let (param, grad, m, v) = (pointer(param), pointer(grad), pointer(m), pointer(v))
        let mask = mask.map { pointer($0) }
        if let flag, float64s(flag.buffer)[flag.index] != 0 {
            return
        }

        // As torch.optim.AdamW (single-tensor path): p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g;
        // v ← β2·v + (1−β2)·g²; p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps).
        // The bias corrections are computed in float64 as Python does, then rounded once.
        let beta1 = hyper.beta1
        let beta2 = hyper.beta2
        let decay = 1 - hyper.learningRate * hyper.weightDecay
        let stepSize = Float(Double(hyper.learningRate) / (1 - pow(Double(beta1), Double(hyper.step))))
        let inverseSqrtCorrection2 = Float(1 / (1 - pow(Double(beta2), Double(hyper.step))).squareRoot())
        let eps = hyper.eps
        parallelChunks(count, costPerItem: 8) { elements in
            for i in elements {
                if let mask, mask[i] == 0 { continue }
                let g = grad[i]
                let newM = beta1 * m[i] + (1 - beta1) * g
                let newV = beta2 * v[i] + (1 - beta2) * g * g
                m[i] = newM
                v[i] = newV
                param[i] = param[i] * decay - stepSize * newM / (newV.squareRoot() * inverseSqrtCorrection2 + eps)
            }
        }
    }

    // Indices are device memory and are not checked on the host (`Backend`'s contract): as on OpenCL, an index
    // outside the buffer gathers NaN and is skipped by scatterAdd, instead of reading or writing outside it.

    public func uncheckedGather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let indices = int32s(indices)
        let (source, sourceCount) = (pointer(src), src.count)
        let destination = pointer(dst)
        parallelChunks(count, costPerItem: 2) { elements in
            for i in elements {
                let j = Int(indices[i])
                destination[i] = j >= 0 && j < sourceCount ? source[j] : .nan
            }
        }
    }

    public func uncheckedScatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let indices = int32s(indices)
        let source = pointer(src)
        let (destination, destinationCount) = (pointer(dst), dst.count)
        // Serial: duplicate indices (a caller's bug) then still give the sum instead of a lost update.
        for i in 0 ..< count {
            let j = Int(indices[i])
            if j >= 0 && j < destinationCount { destination[j] += source[i] }
        }
    }
}
