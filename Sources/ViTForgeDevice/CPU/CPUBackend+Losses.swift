#if canImport(Glibc)
import Glibc
#endif

// Cross-entropy with label smoothing and knowledge distillation. Rows are few (the batch) and classes ≤ 1000, so
// each row is done in float64 from the logits: the loss is then exact to float32 rounding even when a probability
// underflows.

extension CPUBackend {
    public func uncheckedCrossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer,
                                             rows: Int, classes: Int, smoothing: Float) throws
    {
        let logits = pointer(logits)
        let labels = int32s(labels)
        let probs = pointer(probs)
        let losses = pointer(losses)
        guard classes > 0 else { return }
        let epsilon = Double(smoothing)
        parallelChunks(rows, costPerItem: 8 * classes) { rowRange in
            for r in rowRange {
                let row = logits + r * classes
                let logSumExp = logSumExpAsDouble(row, classes, temperature: 1)
                var sumLogits = 0.0
                for c in 0 ..< classes {
                    probs[r * classes + c] = Float(exp(Double(row[c]) - logSumExp))
                    sumLogits += Double(row[c])
                }
                // −Σ y·log p with y = (1−ε)·onehot + ε/C and log p = logit − logSumExp.
                let label = Int(labels[r])
                guard isClassIndex(label, classes) else {
                    losses[r] = .nan
                    continue
                }
                losses[r] = Float(logSumExp - (1 - epsilon) * Double(row[label])
                    - epsilon / Double(classes) * sumLogits)
            }
        }
    }

    public func uncheckedCrossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer,
                                              rows: Int, classes: Int, smoothing: Float, scale: Float) throws
    {
        let probs = pointer(probs)
        let labels = int32s(labels)
        let dLogits = pointer(dLogits)
        guard classes > 0 else { return }
        let uniform = smoothing / Float(classes)
        parallelChunks(rows, costPerItem: classes) { rowRange in
            for r in rowRange {
                let offset = r * classes
                let label = Int(labels[r])
                guard isClassIndex(label, classes) else {
                    (dLogits + offset).update(repeating: .nan, count: classes)
                    continue
                }
                for c in 0 ..< classes { dLogits[offset + c] += scale * (probs[offset + c] - uniform) }
                dLogits[offset + label] -= scale * (1 - smoothing)
            }
        }
    }

    public func uncheckedDistillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer,
                                             teacherProbs: Buffer, losses: Buffer, rows: Int, classes: Int,
                                             temperature: Float) throws
    {
        let (student, teacher, losses) = (pointer(student), pointer(teacher), pointer(losses))
        let (studentProbs, teacherProbs) = (pointer(studentProbs), pointer(teacherProbs))
        guard classes > 0 else { return }
        let t = Double(temperature)
        parallelChunks(rows, costPerItem: 16 * classes) { rowRange in
            for r in rowRange {
                let offset = r * classes
                let studentLogSumExp = logSumExpAsDouble(student + offset, classes, temperature: t)
                let teacherLogSumExp = logSumExpAsDouble(teacher + offset, classes, temperature: t)
                var divergence = 0.0
                for c in 0 ..< classes {
                    let logStudent = Double(student[offset + c]) / t - studentLogSumExp
                    let logTeacher = Double(teacher[offset + c]) / t - teacherLogSumExp
                    let teacherProbability = exp(logTeacher)
                    divergence += teacherProbability * (logTeacher - logStudent)
                    studentProbs[offset + c] = Float(exp(logStudent))
                    teacherProbs[offset + c] = Float(teacherProbability)
                }
                losses[r] = Float(t * t * divergence)
            }
        }
    }

    public func uncheckedDistillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer,
                                              rows: Int, classes: Int, temperature: Float, scale: Float) throws
    {
        let studentProbs = pointer(studentProbs)
        let teacherProbs = pointer(teacherProbs)
        let dStudent = pointer(dStudent)
        // d(T²·KL)/d student = T·(ps − pt): one T from T², the other cancelled by softmax(student / T).
        let factor = scale * temperature
        parallelChunks(rows * classes, costPerItem: 1) { elements in
            for i in elements { dStudent[i] += factor * (studentProbs[i] - teacherProbs[i]) }
        }
    }
}

/// Labels are device memory and are not checked on the host (`Backend`'s contract): a label outside the classes makes
/// its row's loss, or its row of the gradient, NaN, as on OpenCL, instead of reading outside the row.
@inline(__always)
private func isClassIndex(_ label: Int, _ classes: Int) -> Bool { label >= 0 && label < classes }

/// `log Σ_c exp(row[c] / T)` in float64, shifted by the row's maximum so that exp cannot overflow.
@inline(__always)
private func logSumExpAsDouble(_ row: UnsafePointer<Float>, _ classes: Int, temperature: Double) -> Double {
    var maximum = -Double.infinity
    for c in 0 ..< classes { maximum = max(maximum, Double(row[c]) / temperature) }
    var total = 0.0
    for c in 0 ..< classes { total += exp(Double(row[c]) / temperature - maximum) }
    return maximum + log(total)
}
