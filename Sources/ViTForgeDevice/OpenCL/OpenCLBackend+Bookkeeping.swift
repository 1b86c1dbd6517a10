import COpenCL
#if canImport(Glibc)
import Glibc
#endif

/// The trainer's device-side bookkeeping: loss sums with the non-finite flag, clipping, AdamW.
extension OpenCLBackend {
    public func uncheckedAccumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double],
                                       into accumulators: Buffer, flag: Int?, marker: Double) throws {
        try requireFloat64("accumulateSum")
        let xMemory = clMemory(x)
        let accumulatorMemory = clMemory(accumulators)
        let padded = weights + [Double](repeating: 0, count: DeviceFlag.maximumWeights - weights.count)
        try reductionLock.withLock {
            // count 0 still runs the combine: s = 0 over zero groups.
            let (partials, groups) = count == 0 ? (accumulatorMemory, 0)
                : try launchSumPartials(xMemory, count: count, mode: squares ? 1 : 0)
            try launchGroups(.accumulatePartials, groups: 1, [
                .buffer(partials), try .int(groups), .buffer(accumulatorMemory), try .int(weights.count),
            ] + padded.map { .double($0) } + [try .int(flag ?? -1, "flag"), .double(marker)])
        }
    }

    public func uncheckedClipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int,
                                   maxNorm: Double, epsilon: Double) throws {
        try requireFloat64("clipScale")
        try launch(.clipScale, global: count, [
            .buffer(clMemory(x)), try .int(count),
            .buffer(clMemory(accumulators)), try .int(index, "index"),
            .double(maxNorm), .double(epsilon),
        ])
    }

    // MARK: Optimizer and masks

    public func uncheckedAdamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                                   hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws {
        let paramMemory = clMemory(param)
        let maskMemory = mask.map { clMemory($0) }
        let flagMemory = flag.map { clMemory($0.buffer) }
        let beta1 = Double(hyper.beta1), beta2 = Double(hyper.beta2), step = Double(hyper.step)
        let biasCorrection1 = 1 - pow(beta1, step), sqrtBiasCorrection2 = (1 - pow(beta2, step)).squareRoot()
        try launch(.adamwStep, global: count, [
            .buffer(paramMemory), .buffer(clMemory(grad)),
            .buffer(clMemory(m)), .buffer(clMemory(v)),
            // Without a mask the kernel never reads this argument, but OpenCL 1.2 wants a valid buffer there.
            .buffer(maskMemory ?? paramMemory), .int32(maskMemory == nil ? 0 : 1),
            .buffer(flagMemory ?? paramMemory), try .int(flag?.index ?? -1, "flag"), try .int(count),
            .float(hyper.learningRate), .float(hyper.beta1), .float(hyper.beta2), .float(hyper.eps),
            .float(hyper.weightDecay), .float(Float(biasCorrection1)), .float(Float(sqrtBiasCorrection2)),
        ])
    }
}
