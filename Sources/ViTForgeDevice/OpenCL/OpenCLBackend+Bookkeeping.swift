import COpenCL
#if canImport(Glibc)
import Glibc
#endif

/// The trainer's device-side bookkeeping: loss sums with the non-finite flag, clipping, AdamW.
extension OpenCLBackend {
    public func accumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double], into accumulators: Buffer,
                              flag: Int?, marker: Double) throws {
        let op = "accumulateSum"
        try requireFloat64(op)
        guard weights.count <= DeviceFlag.maximumWeights else {
            throw BackendError.invalidArgument("\(op): \(weights.count) weights, at most \(DeviceFlag.maximumWeights)")
        }
        if let flag, flag < 0 { throw BackendError.invalidArgument("\(op): flag index \(flag) < 0") }
        let xMemory = try checked(x, op, "x", count: count)
        let doubles = max(weights.count, flag.map { $0 + 2 } ?? 0)
        let accumulatorMemory = try checked(accumulators, op, "accumulators", count: 2 * doubles)
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

    public func clipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int, maxNorm: Double,
                          epsilon: Double) throws {
        let op = "clipScale"
        try requireFloat64(op)
        guard index >= 0 else { throw BackendError.invalidArgument("\(op): index \(index) < 0") }
        try launch(.clipScale, global: count, [
            .buffer(try checked(x, op, "x", count: count)), try .int(count),
            .buffer(try checked(accumulators, op, "accumulators", count: 2 * index + 2)), try .int(index, "index"),
            .double(maxNorm), .double(epsilon),
        ])
    }

    // MARK: Optimizer and masks

    public func adamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                          hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws {
        let op = "adamwStep"
        guard hyper.step >= 1 else { throw BackendError.invalidArgument("\(op): step \(hyper.step) < 1 (it is 1-based)") }
        let paramMemory = try checked(param, op, "param", count: count)
        let maskMemory = try mask.map { try checked($0, op, "mask", count: count) }
        let flagMemory = try flag.map { try checked($0.buffer, op, "flag", count: 2 * $0.index + 2) }
        if let flag, flag.index < 0 { throw BackendError.invalidArgument("\(op): flag index \(flag.index) < 0") }
        let beta1 = Double(hyper.beta1), beta2 = Double(hyper.beta2), step = Double(hyper.step)
        let biasCorrection1 = 1 - pow(beta1, step), sqrtBiasCorrection2 = (1 - pow(beta2, step)).squareRoot()
        try launch(.adamwStep, global: count, [
            .buffer(paramMemory), .buffer(try checked(grad, op, "grad", count: count)),
            .buffer(try checked(m, op, "m", count: count)), .buffer(try checked(v, op, "v", count: count)),
            // Without a mask the kernel never reads this argument, but OpenCL 1.2 wants a valid buffer there.
            .buffer(maskMemory ?? paramMemory), .int32(maskMemory == nil ? 0 : 1),
            .buffer(flagMemory ?? paramMemory), try .int(flag?.index ?? -1, "flag"), try .int(count),
            .float(hyper.learningRate), .float(hyper.beta1), .float(hyper.beta2), .float(hyper.eps),
            .float(hyper.weightDecay), .float(Float(biasCorrection1)), .float(Float(sqrtBiasCorrection2)),
        ])
    }
}
