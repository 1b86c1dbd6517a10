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

    init(_ backend: Backend, rows: Int, hidden: Int) throws {
        preActivation = try backend.allocate(rows * hidden)
        self.hidden = try backend.allocate(rows * hidden)
    }
}

enum MLP {
    /// `out = fc2(gelu(fc1(x)))`; without `addingFC2Bias`, `out` lacks fc2's bias: the caller adds it in the
    /// residual add (`residualLayerNormForward`).
    static func forward(_ backend: Backend, x: Buffer, weights: MLPWeights, rows: Int, width: Int, hidden: Int,
                        cache: MLPCache, out: Buffer, addingFC2Bias: Bool = true) throws {
        try Linear.forward(backend, x: x, weight: weights.fc1Weight, bias: nil, out: cache.preActivation,
                           rows: rows, inFeatures: width, outFeatures: hidden)
        try backend.biasGeluForward(x: cache.preActivation, bias: weights.fc1Bias, out: cache.hidden,
                                    rows: rows, cols: hidden)
        try Linear.forward(backend, x: cache.hidden, weight: weights.fc2Weight,
                           bias: addingFC2Bias ? weights.fc2Bias : nil, out: out,
                           rows: rows, inFeatures: hidden, outFeatures: width)
    }

    /// Accumulates dX (or, with `overwriteDX`, writes it) and the weight gradients; `dHidden` and `dPreActivation`
    /// are scratch [rows, hidden].
    static func backward(_ backend: Backend, dOut: Buffer, x: Buffer, weights: MLPWeights, gradients: MLPWeights,
                         rows: Int, width: Int, hidden: Int, cache: MLPCache,
                         dHidden: Buffer, dPreActivation: Buffer, dX: Buffer, overwriteDX: Bool = false) throws {
        // dHidden is written whole by fc2's backward GEMM (beta 0); biasGeluBackward accumulates, so
        // dPreActivation still starts from zero.
        try backend.fill(dPreActivation, value: 0, offset: 0, count: rows * hidden)
        try Linear.backward(backend, dOut: dOut, x: cache.hidden, weight: weights.fc2Weight,
                            dX: dHidden, dWeight: gradients.fc2Weight, dBias: gradients.fc2Bias,
                            rows: rows, inFeatures: hidden, outFeatures: width, overwriteDX: true)

        try backend.biasGeluBackward(dOut: dHidden, x: cache.preActivation, bias: weights.fc1Bias,
                                     dX: dPreActivation, rows: rows, cols: hidden)
        try Linear.backward(backend, dOut: dPreActivation, x: x, weight: weights.fc1Weight,
                            dX: dX, dWeight: gradients.fc1Weight, dBias: gradients.fc1Bias,
                            rows: rows, inFeatures: width, outFeatures: hidden, overwriteDX: overwriteDX)
    }
}
