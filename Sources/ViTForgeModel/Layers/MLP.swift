import ViTForgeDevice

/// `fc2(gelu(fc1(x)))` with the exact erf GELU, on x [rows, width] (already normalised); hidden width may differ
/// per block after pruning.
struct MLPWeights {
    let fc1Weight: Buffer  // [hidden, width]
    let fc1Bias: Buffer    // [hidden]
    let fc2Weight: Buffer  // [width, hidden]
    let fc2Bias: Buffer    // [width]
}

struct MLPCache {
    let preActivation: Buffer  // [rows, hidden], x·W1ᵀ without the bias (the bias is fused into the GELU)
    let hidden: Buffer         // [rows, hidden], gelu(preActivation + b1): the activations VBP measures
    let maskedHidden: Buffer?  // [rows, hidden], hidden times the block's MLP mask: what fc2 reads

    init(_ backend: Backend, rows: Int, hidden: Int, masked: Bool = false) throws {
        preActivation = try backend.allocate(rows * hidden)
        self.hidden = try backend.allocate(rows * hidden)
        maskedHidden = masked ? try backend.allocate(rows * hidden) : nil
    }

    /// What fc2 reads: the masked activations when there is a mask.
    func fc2Input(_ mask: ChannelMask?) throws -> Buffer {
        guard mask != nil else { return hidden }
        guard let maskedHidden else { throw BackendError.invalidArgument("MLP: a mask without its activation buffer") }
        return maskedHidden
    }
}

enum MLP {
    /// With `mask`, every hidden neuron's output is multiplied by its mask value after GELU.
    static func forward(_ backend: Backend, x: Buffer, weights: MLPWeights, rows: Int, width: Int, hidden: Int,
                        cache: MLPCache, mask: ChannelMask? = nil, out: Buffer) throws {
        try Linear.forward(backend, x: x, weight: weights.fc1Weight, bias: nil, out: cache.preActivation,
                           rows: rows, inFeatures: width, outFeatures: hidden)
        try backend.biasGeluForward(x: cache.preActivation, bias: weights.fc1Bias, out: cache.hidden,
                                    rows: rows, cols: hidden)
        let fc2Input = try cache.fc2Input(mask)
        if let mask {
            try backend.scaleColumns(cache.hidden, mask: mask.values, out: fc2Input, rows: rows, cols: hidden)
        }
        try Linear.forward(backend, x: fc2Input, weight: weights.fc2Weight, bias: weights.fc2Bias, out: out,
                           rows: rows, inFeatures: hidden, outFeatures: width)
    }

    /// Accumulates dX (or, with `overwriteDX`, writes it) and the weight gradients; `dHidden` and `dPreActivation`
    /// are scratch [rows, hidden].
    static func backward(_ backend: Backend, dOut: Buffer, x: Buffer, weights: MLPWeights, gradients: MLPWeights,
                         rows: Int, width: Int, hidden: Int, cache: MLPCache, mask: ChannelMask? = nil,
                         dHidden: Buffer, dPreActivation: Buffer, dX: Buffer, overwriteDX: Bool = false) throws {
        // dHidden is written whole by fc2's backward GEMM (beta 0); biasGeluBackward accumulates, so
        // dPreActivation still starts from zero.
        try backend.fill(dPreActivation, value: 0, offset: 0, count: rows * hidden)
        try Linear.backward(backend, dOut: dOut, x: cache.fc2Input(mask), weight: weights.fc2Weight,
                            dX: dHidden, dWeight: gradients.fc2Weight, dBias: gradients.fc2Bias,
                            rows: rows, inFeatures: hidden, outFeatures: width, overwriteDX: true)
        if let mask {
            // dHidden is the gradient of the masked activations; the mask's gradient sums it against the
            // activations before the mask, and GELU's backward gets dHidden times the mask.
            if let gradient = mask.gradient {
                try backend.maskGradient(x: cache.hidden, dY: dHidden, dMask: gradient, rows: rows, cols: hidden)
            }
            try backend.scaleColumns(dHidden, mask: mask.values, out: dHidden, rows: rows, cols: hidden)
        }
        try backend.biasGeluBackward(dOut: dHidden, x: cache.preActivation, bias: weights.fc1Bias,
                                     dX: dPreActivation, rows: rows, cols: hidden)
        try Linear.backward(backend, dOut: dPreActivation, x: x, weight: weights.fc1Weight,
                            dX: dX, dWeight: gradients.fc1Weight, dBias: gradients.fc1Bias,
                            rows: rows, inFeatures: width, outFeatures: hidden, overwriteDX: overwriteDX)
    }
}
