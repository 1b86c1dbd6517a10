#if canImport(Glibc)
import Glibc
#endif

// AdamW, and the gather/scatter pair used by surgery and token selection.

extension CPUBackend {
    public func adamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                          hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws
    {
        let operation = "adamwStep"
        try requireSizes(operation, ["count": count])
        guard hyper.step >= 1 else {
            throw BackendError.invalidArgument("\(operation): step \(hyper.step) must be ≥ 1 (it is 1-based)")
        }
        let param = try range(param, count: count, operation, "param")
        let grad = try range(grad, count: count, operation, "grad")
        let m = try range(m, count: count, operation, "m")
        let v = try range(v, count: count, operation, "v")
        let mask = try mask.map { try range($0, count: count, operation, "mask") }
        if let flag, try float64Range(flag.buffer, doubles: flag.index + 1, operation, "flag")[flag.index] != 0 {
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

    public func gather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        try requireSizes("gather", ["count": count])
        let indices = try checkedIndices(indices, count: count, into: src, "gather", "src")
        let source = storage(src).pointer
        let destination = try range(dst, count: count, "gather", "dst")
        parallelChunks(count, costPerItem: 2) { elements in
            for i in elements { destination[i] = source[Int(indices[i])] }
        }
    }

    public func scatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        try requireSizes("scatterAdd", ["count": count])
        let indices = try checkedIndices(indices, count: count, into: dst, "scatterAdd", "dst")
        let source = try range(src, count: count, "scatterAdd", "src")
        let destination = storage(dst).pointer
        // Serial: duplicate indices (a caller's bug) then still give the sum instead of a lost update.
        for i in 0 ..< count { destination[Int(indices[i])] += source[i] }
    }

    /// Checks every index before anything is written, so that a bad index leaves the output untouched.
    private func checkedIndices(_ indices: Buffer, count: Int, into target: Buffer, _ operation: String,
                                _ targetName: String) throws -> Int32Elements
    {
        let values = try int32Range(indices, count: count, operation, "indices")
        for i in 0 ..< count where values[i] < 0 || Int(values[i]) >= target.count {
            throw BackendError.invalidArgument(
                "\(operation): index \(values[i]) at \(i) is outside \(targetName) (\(target.count) elements)")
        }
        return values
    }
}
