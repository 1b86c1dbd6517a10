#if canImport(Glibc)
import Glibc
#endif
import ViTForgeDevice

/// A float64 reference for every operation of `Backend`: plain loops over `[Double]`, written straight from the
/// protocol's documentation, with no attempt at speed. Backward functions return the *contribution* (what the
/// backend adds to its gradient buffers); the tests add the prefill themselves.
/// The backward functions are in turn checked against finite differences of the forward ones.
enum Reference {
    // MARK: Matrix products

    /// `C = alpha·op(A)·op(B) + beta·C` for every matrix of the (strided) batch; returns the whole C buffer.
    static func gemm(_ spec: GemmSpec, a: [Double], b: [Double], c: [Double]) -> [Double] {
        var result = c
        for batch in 0 ..< spec.batch {
            let baseA = spec.offsetA + batch * spec.strideA
            let baseB = spec.offsetB + batch * spec.strideB
            let baseC = spec.offsetC + batch * spec.strideC
            for i in 0 ..< spec.m {
                for j in 0 ..< spec.n {
                    var dot = 0.0
                    for p in 0 ..< spec.k {
                        let elementA = spec.transA ? a[baseA + p * spec.lda + i] : a[baseA + i * spec.lda + p]
                        let elementB = spec.transB ? b[baseB + j * spec.ldb + p] : b[baseB + p * spec.ldb + j]
                        dot += elementA * elementB
                    }
                    let index = baseC + i * spec.ldc + j
                    result[index] = Double(spec.alpha) * dot + Double(spec.beta) * c[index]
                }
            }
        }
        return result
    }

    static func gram(_ a: [Double], rows: Int, cols: Int) -> [Double] {
        var out = [Double](repeating: 0, count: cols * cols)
        for i in 0 ..< cols {
            for j in 0 ..< cols {
                for r in 0 ..< rows { out[i * cols + j] += a[r * cols + i] * a[r * cols + j] }
            }
        }
        return out
    }

    static func matVec(_ a: [Double], rows: Int, cols: Int, x: [Double], transposed: Bool) -> [Double] {
        var y = [Double](repeating: 0, count: transposed ? cols : rows)
        for r in 0 ..< rows {
            for c in 0 ..< cols {
                if transposed {
                    y[c] += a[r * cols + c] * x[r]
                } else {
                    y[r] += a[r * cols + c] * x[c]
                }
            }
        }
        return y
    }

    // MARK: Elementwise and row operations

    static func addBias(_ x: [Double], bias: [Double], rows: Int, cols: Int) -> [Double] {
        var out = x
        for r in 0 ..< rows {
            for c in 0 ..< cols { out[r * cols + c] += bias[c] }
        }
        return out
    }

    static func addBiasBackward(dOut: [Double], rows: Int, cols: Int) -> [Double] {
        var dBias = [Double](repeating: 0, count: cols)
        for r in 0 ..< rows {
            for c in 0 ..< cols { dBias[c] += dOut[r * cols + c] }
        }
        return dBias
    }

    static func add(_ a: [Double], _ b: [Double]) -> [Double] {
        var out = a
        for i in 0 ..< a.count { out[i] = a[i] + b[i] }
        return out
    }

    static func axpy(alpha: Double, x: [Double], y: [Double]) -> [Double] {
        var out = y
        for i in 0 ..< x.count { out[i] = y[i] + alpha * x[i] }
        return out
    }

    static func scale(_ x: [Double], by alpha: Double) -> [Double] {
        var out = x
        for i in 0 ..< x.count { out[i] = alpha * x[i] }
        return out
    }

    static func layerNormForward(x: [Double], gamma: [Double], beta: [Double], rows: Int, cols: Int, eps: Double)
        -> (out: [Double], mean: [Double], rstd: [Double])
    {
        var out = [Double](repeating: 0, count: rows * cols)
        var mean = [Double](repeating: 0, count: rows)
        var rstd = [Double](repeating: 0, count: rows)
        for r in 0 ..< rows {
            var total = 0.0
            for c in 0 ..< cols { total += x[r * cols + c] }
            mean[r] = total / Double(cols)
            var squares = 0.0
            for c in 0 ..< cols { squares += (x[r * cols + c] - mean[r]) * (x[r * cols + c] - mean[r]) }
            rstd[r] = 1 / (squares / Double(cols) + eps).squareRoot()
            for c in 0 ..< cols {
                out[r * cols + c] = (x[r * cols + c] - mean[r]) * rstd[r] * gamma[c] + beta[c]
            }
        }
        return (out, mean, rstd)
    }

    static func layerNormBackward(dOut: [Double], x: [Double], gamma: [Double], mean: [Double], rstd: [Double],
                                  rows: Int, cols: Int) -> (dX: [Double], dGamma: [Double], dBeta: [Double])
    {
        var dX = [Double](repeating: 0, count: rows * cols)
        var dGamma = [Double](repeating: 0, count: cols)
        var dBeta = [Double](repeating: 0, count: cols)
        for r in 0 ..< rows {
            var xhat = [Double](repeating: 0, count: cols)
            var dXhat = [Double](repeating: 0, count: cols)
            for c in 0 ..< cols {
                xhat[c] = (x[r * cols + c] - mean[r]) * rstd[r]
                dXhat[c] = dOut[r * cols + c] * gamma[c]
                dGamma[c] += dOut[r * cols + c] * xhat[c]
                dBeta[c] += dOut[r * cols + c]
            }
            var meanDXhat = 0.0
            var meanDXhatXhat = 0.0
            for c in 0 ..< cols {
                meanDXhat += dXhat[c] / Double(cols)
                meanDXhatXhat += dXhat[c] * xhat[c] / Double(cols)
            }
            for c in 0 ..< cols {
                dX[r * cols + c] = rstd[r] * (dXhat[c] - meanDXhat - xhat[c] * meanDXhatXhat)
            }
        }
        return (dX, dGamma, dBeta)
    }

    /// log softmax(scale·x) per row, formed as scale·x − max − log Σ exp(scale·x − max): finite where a probability
    /// underflows (logits thousands apart), so the losses below stay exact there; −Inf only for a −Inf input.
    static func logSoftmax(x: [Double], rows: Int, cols: Int, scale: Double) -> [Double] {
        var out = [Double](repeating: 0, count: rows * cols)
        for r in 0 ..< rows {
            var maximum = -Double.infinity
            for c in 0 ..< cols { maximum = max(maximum, scale * x[r * cols + c]) }
            var total = 0.0
            for c in 0 ..< cols { total += exp(scale * x[r * cols + c] - maximum) }
            for c in 0 ..< cols { out[r * cols + c] = scale * x[r * cols + c] - maximum - log(total) }
        }
        return out
    }

    static func softmaxForward(x: [Double], rows: Int, cols: Int, scale: Double) -> [Double] {
        logSoftmax(x: x, rows: rows, cols: cols, scale: scale).map { exp($0) }
    }

    static func softmaxBackward(dOut: [Double], out y: [Double], rows: Int, cols: Int, scale: Double) -> [Double] {
        var dX = [Double](repeating: 0, count: rows * cols)
        for r in 0 ..< rows {
            var dot = 0.0
            for c in 0 ..< cols { dot += dOut[r * cols + c] * y[r * cols + c] }
            for c in 0 ..< cols { dX[r * cols + c] = scale * y[r * cols + c] * (dOut[r * cols + c] - dot) }
        }
        return dX
    }

    static func gelu(_ u: Double) -> Double { 0.5 * u * (1 + erf(u / 2.0.squareRoot())) }

    static func geluDerivative(_ u: Double) -> Double {
        0.5 * (1 + erf(u / 2.0.squareRoot())) + u * exp(-0.5 * u * u) / (2 * Double.pi).squareRoot()
    }

    static func biasGeluForward(x: [Double], bias: [Double], rows: Int, cols: Int) -> [Double] {
        var out = [Double](repeating: 0, count: rows * cols)
        for r in 0 ..< rows {
            for c in 0 ..< cols { out[r * cols + c] = gelu(x[r * cols + c] + bias[c]) }
        }
        return out
    }

    static func biasGeluBackward(dOut: [Double], x: [Double], bias: [Double], rows: Int, cols: Int) -> [Double] {
        var dX = [Double](repeating: 0, count: rows * cols)
        for r in 0 ..< rows {
            for c in 0 ..< cols {
                dX[r * cols + c] = geluDerivative(x[r * cols + c] + bias[c]) * dOut[r * cols + c]
            }
        }
        return dX
    }

    // MARK: Losses

    /// The smoothed target `y = (1−ε)·onehot(label) + ε/classes`, as a row.
    static func smoothedTarget(label: Int, classes: Int, smoothing: Double) -> [Double] {
        var target = [Double](repeating: smoothing / Double(classes), count: classes)
        target[label] += 1 - smoothing
        return target
    }

    static func crossEntropyForward(logits: [Double], labels: [Int], rows: Int, classes: Int, smoothing: Double)
        -> (probs: [Double], losses: [Double])
    {
        let logProbs = logSoftmax(x: logits, rows: rows, cols: classes, scale: 1)
        var losses = [Double](repeating: 0, count: rows)
        for r in 0 ..< rows {
            let target = smoothedTarget(label: labels[r], classes: classes, smoothing: smoothing)
            for c in 0 ..< classes { losses[r] -= target[c] * logProbs[r * classes + c] }
        }
        return (logProbs.map { exp($0) }, losses)
    }

    static func crossEntropyBackward(probs: [Double], labels: [Int], rows: Int, classes: Int, smoothing: Double,
                                     scale: Double) -> [Double]
    {
        var dLogits = [Double](repeating: 0, count: rows * classes)
        for r in 0 ..< rows {
            let target = smoothedTarget(label: labels[r], classes: classes, smoothing: smoothing)
            for c in 0 ..< classes { dLogits[r * classes + c] = scale * (probs[r * classes + c] - target[c]) }
        }
        return dLogits
    }

    static func distillationForward(student: [Double], teacher: [Double], rows: Int, classes: Int,
                                    temperature t: Double)
        -> (studentProbs: [Double], teacherProbs: [Double], losses: [Double])
    {
        let logStudent = logSoftmax(x: student, rows: rows, cols: classes, scale: 1 / t)
        let logTeacher = logSoftmax(x: teacher, rows: rows, cols: classes, scale: 1 / t)
        var losses = [Double](repeating: 0, count: rows)
        for r in 0 ..< rows {
            for c in 0 ..< classes {
                let i = r * classes + c
                losses[r] += t * t * exp(logTeacher[i]) * (logTeacher[i] - logStudent[i])
            }
        }
        return (logStudent.map { exp($0) }, logTeacher.map { exp($0) }, losses)
    }

    static func distillationBackward(studentProbs: [Double], teacherProbs: [Double], temperature: Double,
                                     scale: Double) -> [Double]
    {
        var dStudent = [Double](repeating: 0, count: studentProbs.count)
        for i in 0 ..< studentProbs.count {
            dStudent[i] = scale * temperature * (studentProbs[i] - teacherProbs[i])
        }
        return dStudent
    }

    // MARK: Statistics and reductions

    /// Two-pass per-column mean, M2 = Σ (x − mean)², and population variance M2 / rows.
    static func columnStatistics(_ x: [Double], rows: Int, cols: Int)
        -> (mean: [Double], m2: [Double], variance: [Double])
    {
        var mean = [Double](repeating: 0, count: cols)
        var m2 = [Double](repeating: 0, count: cols)
        for r in 0 ..< rows {
            for c in 0 ..< cols { mean[c] += x[r * cols + c] / Double(rows) }
        }
        for r in 0 ..< rows {
            for c in 0 ..< cols { m2[c] += (x[r * cols + c] - mean[c]) * (x[r * cols + c] - mean[c]) }
        }
        return (mean, m2, m2.map { $0 / Double(rows) })
    }

    static func sum(_ x: [Double]) -> Double {
        var total = 0.0
        for value in x { total += value }
        return total
    }

    static func sumOfSquares(_ x: [Double]) -> Double {
        var total = 0.0
        for value in x { total += value * value }
        return total
    }

    // MARK: Optimizer and masks

    /// torch.optim.AdamW, one step, element by element.
    static func adamwStep(param: [Double], grad: [Double], m: [Double], v: [Double], mask: [Double]?,
                          hyper: AdamWHyperparameters) -> (param: [Double], m: [Double], v: [Double])
    {
        let lr = Double(hyper.learningRate)
        let beta1 = Double(hyper.beta1)
        let beta2 = Double(hyper.beta2)
        let step = Double(hyper.step)
        var (newParam, newM, newV) = (param, m, v)
        for i in 0 ..< param.count {
            if let mask, mask[i] == 0 { continue }
            var p = param[i]
            p -= lr * Double(hyper.weightDecay) * p
            newM[i] = beta1 * m[i] + (1 - beta1) * grad[i]
            newV[i] = beta2 * v[i] + (1 - beta2) * grad[i] * grad[i]
            let mHat = newM[i] / (1 - pow(beta1, step))
            let vHat = newV[i] / (1 - pow(beta2, step))
            p -= lr * mHat / (vHat.squareRoot() + Double(hyper.eps))
            newParam[i] = p
        }
        return (newParam, newM, newV)
    }

    // MARK: Gather / scatter

    static func gather(src: [Double], indices: [Int]) -> [Double] {
        indices.map { src[$0] }
    }

    /// The contribution `scatterAdd` adds to a destination of `count` elements.
    static func scatterAdd(src: [Double], indices: [Int], count: Int) -> [Double] {
        var dst = [Double](repeating: 0, count: count)
        for i in 0 ..< indices.count { dst[indices[i]] += src[i] }
        return dst
    }
}
