import ViTForgeDevice
import ViTForgeFormats

/// `y = x·Wᵀ + b` with PyTorch's `nn.Linear` layout: weight [out, in], bias [out], x [rows, in], y [rows, out].
enum Linear {
    static func forward(_ backend: Backend, x: Buffer, weight: Buffer, bias: Buffer?, out: Buffer,
                        rows: Int, inFeatures: Int, outFeatures: Int) throws {
        try backend.gemm(GemmSpec(m: rows, n: outFeatures, k: inFeatures, transB: true), a: x, b: weight, c: out)
        if let bias { try backend.addBias(out, bias: bias, rows: rows, cols: outFeatures) }
    }

    /// Accumulates `dX += dY·W`, `dW += dYᵀ·x`, `dB += Σ_rows dY` (any of them may be skipped with nil).
    /// `overwriteDX`: `dX = dY·W` instead, for a scratch dX that would otherwise be zero-filled first (the callers'
    /// fills of [rows, hidden] scratch were ~2% of an fm-vit-c training step, perf).
    static func backward(_ backend: Backend, dOut: Buffer, x: Buffer, weight: Buffer,
                         dX: Buffer?, dWeight: Buffer?, dBias: Buffer?,
                         rows: Int, inFeatures: Int, outFeatures: Int, overwriteDX: Bool = false) throws {
        if let dX {
            try backend.gemm(GemmSpec(m: rows, n: inFeatures, k: outFeatures, beta: overwriteDX ? 0 : 1),
                             a: dOut, b: weight, c: dX)
        }
        if let dWeight {
            try backend.gemm(GemmSpec(m: outFeatures, n: inFeatures, k: rows, transA: true, beta: 1),
                             a: dOut, b: x, c: dWeight)
        }
        if let dBias { try backend.addBiasBackward(dOut: dOut, dBias: dBias, rows: rows, cols: outFeatures) }
    }
}
