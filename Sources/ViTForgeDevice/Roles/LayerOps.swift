import ViTForgeSupport
/// A role of `Backend`: the fused layers of a ViT and its losses, forward and backward.
public protocol LayerOps: DeviceMemory {
    /// The implementation behind `layerNormForward`, its arguments already checked.
    func uncheckedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer,
                                   rows: Int, cols: Int, eps: Float) throws

    /// The implementation behind `residualLayerNormForward`, its arguments already checked.
    func uncheckedResidualLayerNormForward(residual: Buffer, branch: Buffer, bias: Buffer, sum: Buffer, gamma: Buffer,
                                           beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer, rows: Int,
                                           cols: Int, eps: Float) throws

    /// The implementation behind `layerNormBackward`, its arguments already checked.
    func uncheckedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer, dX: Buffer,
                                    dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `softmaxForward`, its arguments already checked.
    func uncheckedSoftmaxForward(x: Buffer, out: Buffer, rows: Int, cols: Int, scale: Float) throws

    /// The implementation behind `softmaxBackward`, its arguments already checked.
    func uncheckedSoftmaxBackward(dOut: Buffer, out: Buffer, dX: Buffer, rows: Int, cols: Int, scale: Float) throws

    /// The implementation behind `biasGeluForward`, its arguments already checked.
    func uncheckedBiasGeluForward(x: Buffer, bias: Buffer, out: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `biasGeluBackward`, its arguments already checked.
    func uncheckedBiasGeluBackward(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer, rows: Int, cols: Int) throws

    /// The implementation behind `attentionForward`, its arguments already checked.
    func uncheckedAttentionForward(qkv: Buffer, layout: QKVLayout, batch: Int, tokens: Int, scale: Float, out: Buffer,
                                   logSumExp: Buffer) throws

    /// The implementation behind `attentionBackward`, its arguments already checked.
    func uncheckedAttentionBackward(qkv: Buffer, out: Buffer, logSumExp: Buffer, dOut: Buffer, dQKV: Buffer,
                                    layout: QKVLayout, batch: Int, tokens: Int, scale: Float) throws

    /// The implementation behind `crossEntropyForward`, its arguments already checked.
    func uncheckedCrossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer, rows: Int,
                                      classes: Int, smoothing: Float) throws

    /// The implementation behind `crossEntropyBackward`, its arguments already checked.
    func uncheckedCrossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer, rows: Int, classes: Int,
                                       smoothing: Float, scale: Float) throws

    /// The implementation behind `distillationForward`, its arguments already checked.
    func uncheckedDistillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer, teacherProbs: Buffer,
                                      losses: Buffer, rows: Int, classes: Int, temperature: Float) throws

    /// The implementation behind `distillationBackward`, its arguments already checked.
    func uncheckedDistillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer, rows: Int,
                                       classes: Int, temperature: Float, scale: Float) throws
}

/// The checked entry points: every argument check of the device layer, made once here for every backend (see
/// `ArgumentCheck`).
extension LayerOps {
    /// `out = (x − mean)·rstd·gamma + beta` per row of x [rows, cols]; saves `mean` and `rstd` [rows] for backward.
    public func layerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer,
                                 rows: Int, cols: Int, eps: Float) throws {
        let check = try ArgumentCheck("layerNormForward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (gamma, "gamma", cols), (beta, "beta", cols), (out, "out", n),
                          (mean, "mean", rows), (rstd, "rstd", rows))
        try uncheckedLayerNormForward(x: x, gamma: gamma, beta: beta, out: out, mean: mean, rstd: rstd, rows: rows,
                                      cols: cols, eps: eps)
    }

    /// A residual connection and the LayerNorm after it, in one pass over the rows:
    /// `sum[r, c] = residual[r, c] + (branch[r, c] + bias[c])` (written, added in that order: what `addBias` on the
    /// branch and then `add` with the residual write), then `layerNormForward` of `sum` into `out`, `mean` and `rstd`
    /// [rows]. `sum` may alias `residual` or `branch`; `out` aliases none of the inputs. The backward is
    /// `layerNormBackward` on `sum` (the identity path's gradient is the one `dX` accumulates into) and
    /// `addBiasBackward` for the bias.
    public func residualLayerNormForward(residual: Buffer, branch: Buffer, bias: Buffer, sum: Buffer, gamma: Buffer,
                                         beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer, rows: Int, cols: Int,
                                         eps: Float) throws {
        let check = try ArgumentCheck("residualLayerNormForward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((residual, "residual", n), (branch, "branch", n), (bias, "bias", cols), (sum, "sum", n),
                          (gamma, "gamma", cols), (beta, "beta", cols), (out, "out", n), (mean, "mean", rows),
                          (rstd, "rstd", rows))
        try uncheckedResidualLayerNormForward(residual: residual, branch: branch, bias: bias, sum: sum, gamma: gamma,
                                              beta: beta, out: out, mean: mean, rstd: rstd, rows: rows, cols: cols,
                                              eps: eps)
    }

    /// Accumulates `dX`, `dGamma`, `dBeta` from `dOut`, using the saved `mean`/`rstd`.
    public func layerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer, dX: Buffer,
                                  dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("layerNormBackward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((dOut, "dOut", n), (x, "x", n), (gamma, "gamma", cols), (mean, "mean", rows),
                          (rstd, "rstd", rows), (dX, "dX", n), (dGamma, "dGamma", cols), (dBeta, "dBeta", cols))
        try uncheckedLayerNormBackward(dOut: dOut, x: x, gamma: gamma, mean: mean, rstd: rstd, dX: dX, dGamma: dGamma,
                                       dBeta: dBeta, rows: rows, cols: cols)
    }

    /// `out[r, :] = softmax(scale · x[r, :])` (`out` may alias `x`).
    public func softmaxForward(x: Buffer, out: Buffer, rows: Int, cols: Int, scale: Float) throws {
        let check = try ArgumentCheck("softmaxForward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (out, "out", n))
        try uncheckedSoftmaxForward(x: x, out: out, rows: rows, cols: cols, scale: scale)
    }

    /// `dX[r, c] += scale · y[r, c] · (dOut[r, c] − Σ_j dOut[r, j]·y[r, j])` with `y` the forward output.
    public func softmaxBackward(dOut: Buffer, out: Buffer, dX: Buffer, rows: Int, cols: Int, scale: Float) throws {
        let check = try ArgumentCheck("softmaxBackward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((dOut, "dOut", n), (out, "out", n), (dX, "dX", n))
        try uncheckedSoftmaxBackward(dOut: dOut, out: out, dX: dX, rows: rows, cols: cols, scale: scale)
    }

    /// `out[r, c] = gelu(x[r, c] + bias[c])` with the exact (erf) GELU, as PyTorch's default `nn.GELU()`.
    public func biasGeluForward(x: Buffer, bias: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("biasGeluForward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((x, "x", n), (bias, "bias", cols), (out, "out", n))
        try uncheckedBiasGeluForward(x: x, bias: bias, out: out, rows: rows, cols: cols)
    }

    /// `dX[r, c] += gelu'(x[r, c] + bias[c]) · dOut[r, c]` (the bias gradient is `addBiasBackward` of that).
    public func biasGeluBackward(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer, rows: Int, cols: Int) throws {
        let check = try ArgumentCheck("biasGeluBackward", ["rows": rows, "cols": cols])
        let n = try check.product(rows, cols)
        try check.buffers((dOut, "dOut", n), (x, "x", n), (bias, "bias", cols), (dX, "dX", n))
        try uncheckedBiasGeluBackward(dOut: dOut, x: x, bias: bias, dX: dX, rows: rows, cols: cols)
    }

    /// Fused multi-head attention for `batch` images of `tokens` tokens. `qkv` [batch·tokens, layout.qkvFeatures]
    /// holds each token's q | k | v (as `QKVLayout` places every head's features); for every image, head h and
    /// query i, with `s_ij = scale·q_i·k_j` over the head's q/k width:
    /// `out[i, mergedColumn(h, d)] = Σ_j softmax_j(s_ij)·v_j[d]` (out [batch·tokens, layout.totalV], written) and
    /// `logSumExp[(h·batch + b)·tokens + i] = log Σ_j exp(s_ij)` (written), which is all the backward needs to
    /// recompute the probabilities: the [tokens × tokens] matrices are never stored. Heads may have different and
    /// unequal q/k and v widths (pruned models).
    public func attentionForward(qkv: Buffer, layout: QKVLayout, batch: Int, tokens: Int, scale: Float, out: Buffer,
                                 logSumExp: Buffer) throws {
        let check = try ArgumentCheck("attentionForward", ["batch": batch, "tokens": tokens])
        let (rows, scores) = try check.attention(layout, batch: batch, tokens: tokens)
        try check.buffers((qkv, "qkv", rows * layout.qkvFeatures), (out, "out", rows * layout.totalV),
                          (logSumExp, "logSumExp", scores))
        try uncheckedAttentionForward(qkv: qkv, layout: layout, batch: batch, tokens: tokens, scale: scale, out: out,
                                      logSumExp: logSumExp)
    }

    /// The backward of `attentionForward`: accumulates into the q, k and v columns of `dQKV` [batch·tokens,
    /// qkvFeatures] from `dOut` [batch·tokens, totalV], given the forward's `qkv`, `out` and `logSumExp`.
    public func attentionBackward(qkv: Buffer, out: Buffer, logSumExp: Buffer, dOut: Buffer, dQKV: Buffer,
                                  layout: QKVLayout, batch: Int, tokens: Int, scale: Float) throws {
        let check = try ArgumentCheck("attentionBackward", ["batch": batch, "tokens": tokens])
        let (rows, scores) = try check.attention(layout, batch: batch, tokens: tokens)
        try check.buffers((qkv, "qkv", rows * layout.qkvFeatures), (out, "out", rows * layout.totalV),
                          (logSumExp, "logSumExp", scores), (dOut, "dOut", rows * layout.totalV),
                          (dQKV, "dQKV", rows * layout.qkvFeatures))
        try uncheckedAttentionBackward(qkv: qkv, out: out, logSumExp: logSumExp, dOut: dOut, dQKV: dQKV, layout: layout,
                                       batch: batch, tokens: tokens, scale: scale)
    }

    /// Cross-entropy with label smoothing ε: target `y = (1−ε)·onehot(label) + ε/classes`;
    /// `losses[r] = −Σ_c y_c·log softmax(logits[r])_c`, and `probs` = the softmax, for backward.
    /// `labels` holds `Int32` class indices.
    public func crossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer, rows: Int,
                                    classes: Int, smoothing: Float) throws {
        let check = try ArgumentCheck("crossEntropyForward", ["rows": rows, "classes": classes])
        let n = try check.product(rows, classes)
        try check.buffers((logits, "logits", n), (labels, "labels", rows), (probs, "probs", n),
                          (losses, "losses", rows))
        try uncheckedCrossEntropyForward(logits: logits, labels: labels, probs: probs, losses: losses, rows: rows,
                                         classes: classes, smoothing: smoothing)
    }

    /// `dLogits[r, c] += scale · (probs[r, c] − y[r, c])` (`scale` = dLoss/dlosses[r], e.g. 1/rows for the mean).
    public func crossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer, rows: Int, classes: Int,
                                     smoothing: Float, scale: Float) throws {
        let check = try ArgumentCheck("crossEntropyBackward", ["rows": rows, "classes": classes])
        let n = try check.product(rows, classes)
        try check.buffers((probs, "probs", n), (labels, "labels", rows), (dLogits, "dLogits", n))
        try uncheckedCrossEntropyBackward(probs: probs, labels: labels, dLogits: dLogits, rows: rows, classes: classes,
                                          smoothing: smoothing, scale: scale)
    }

    /// Knowledge distillation at temperature T (Hinton et al. 2015): with `ps = softmax(student/T)` and
    /// `pt = softmax(teacher/T)`, `losses[r] = T²·KL(pt ‖ ps) = T²·Σ_c pt·(log pt − log ps)`.
    /// Saves both softmaxes for backward.
    public func distillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer, teacherProbs: Buffer,
                                    losses: Buffer, rows: Int, classes: Int, temperature: Float) throws {
        let check = try ArgumentCheck("distillationForward", ["rows": rows, "classes": classes])
        try check.require(temperature > 0, "temperature \(temperature) must be positive")
        let n = try check.product(rows, classes)
        try check.buffers((student, "student", n), (teacher, "teacher", n), (studentProbs, "studentProbs", n),
                          (teacherProbs, "teacherProbs", n), (losses, "losses", rows))
        try uncheckedDistillationForward(student: student, teacher: teacher, studentProbs: studentProbs,
                                         teacherProbs: teacherProbs, losses: losses, rows: rows, classes: classes,
                                         temperature: temperature)
    }

    /// `dStudent[r, c] += scale · T · (ps[r, c] − pt[r, c])` (the teacher gets no gradient).
    public func distillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer, rows: Int,
                                     classes: Int, temperature: Float, scale: Float) throws {
        let check = try ArgumentCheck("distillationBackward", ["rows": rows, "classes": classes])
        let n = try check.product(rows, classes)
        try check.buffers((studentProbs, "studentProbs", n), (teacherProbs, "teacherProbs", n),
                          (dStudent, "dStudent", n))
        try uncheckedDistillationBackward(studentProbs: studentProbs, teacherProbs: teacherProbs, dStudent: dStudent,
                                          rows: rows, classes: classes, temperature: temperature, scale: scale)
    }
}
