#if canImport(Glibc)
import Glibc
#endif

// Cross-entropy with label smoothing and knowledge distillation. Rows are few (the batch) and classes ≤ 1000, so
// each row is done in float64 from the logits: the loss is then exact to float32 rounding even when a probability
// underflows.

extension CPUBackend {
    public func crossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer,
                                    rows: Int, classes: Int, smoothing: Float) throws
    {
        let operation = "crossEntropyForward"
        try requireSizes(operation, ["rows": rows, "classes": classes])
        let logits = try range(logits, count: rows * classes, operation, "logits")
        let labels = try checkedLabels(labels, rows: rows, classes: classes, operation)
        let probs = try range(probs, count: rows * classes, operation, "probs")
        let losses = try range(losses, count: rows, operation, "losses")
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
                losses[r] = Float(logSumExp - (1 - epsilon) * Double(row[label])
                    - epsilon / Double(classes) * sumLogits)
            }
        }
    }

    public func crossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer,
                                     rows: Int, classes: Int, smoothing: Float, scale: Float) throws
    {
        let operation = "crossEntropyBackward"
        try requireSizes(operation, ["rows": rows, "classes": classes])
        let probs = try range(probs, count: rows * classes, operation, "probs")
        let labels = try checkedLabels(labels, rows: rows, classes: classes, operation)
        let dLogits = try range(dLogits, count: rows * classes, operation, "dLogits")
        guard classes > 0 else { return }
        let uniform = smoothing / Float(classes)
        parallelChunks(rows, costPerItem: classes) { rowRange in
            for r in rowRange {
                let offset = r * classes
                for c in 0 ..< classes { dLogits[offset + c] += scale * (probs[offset + c] - uniform) }
                dLogits[offset + Int(labels[r])] -= scale * (1 - smoothing)
            }
        }
    }

    public func distillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer, teacherProbs: Buffer,
                                    losses: Buffer, rows: Int, classes: Int, temperature: Float) throws
    {
        let operation = "distillationForward"
        try requireSizes(operation, ["rows": rows, "classes": classes])
        guard temperature > 0 else {
            throw BackendError.invalidArgument("\(operation): temperature \(temperature) must be positive")
        }
        let student = try range(student, count: rows * classes, operation, "student")
        let teacher = try range(teacher, count: rows * classes, operation, "teacher")
        let studentProbs = try range(studentProbs, count: rows * classes, operation, "studentProbs")
        let teacherProbs = try range(teacherProbs, count: rows * classes, operation, "teacherProbs")
        let losses = try range(losses, count: rows, operation, "losses")
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

    public func distillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer,
                                     rows: Int, classes: Int, temperature: Float, scale: Float) throws
    {
        let operation = "distillationBackward"
        try requireSizes(operation, ["rows": rows, "classes": classes])
        let studentProbs = try range(studentProbs, count: rows * classes, operation, "studentProbs")
        let teacherProbs = try range(teacherProbs, count: rows * classes, operation, "teacherProbs")
        let dStudent = try range(dStudent, count: rows * classes, operation, "dStudent")
        // d(T²·KL)/d student = T·(ps − pt): one T from T², the other cancelled by softmax(student / T).
        let factor = scale * temperature
        parallelChunks(rows * classes, costPerItem: 1) { elements in
            for i in elements { dStudent[i] += factor * (studentProbs[i] - teacherProbs[i]) }
        }
    }

    /// The labels buffer after checking every label is a class index: an out-of-range label would read and write
    /// outside the row.
    private func checkedLabels(_ labels: Buffer, rows: Int, classes: Int, _ operation: String) throws
        -> Int32Elements
    {
        let values = try int32Range(labels, count: rows, operation, "labels")
        for r in 0 ..< rows where values[r] < 0 || Int(values[r]) >= classes {
            throw BackendError.invalidArgument(
                "\(operation): label \(values[r]) of row \(r) is not a class index (classes \(classes))")
        }
        return values
    }
}

/// `log Σ_c exp(row[c] / T)` in float64, shifted by the row's maximum so that exp cannot overflow.
@inline(__always)
private func logSumExpAsDouble(_ row: UnsafePointer<Float>, _ classes: Int, temperature: Double) -> Double {
    var maximum = -Double.infinity
    for c in 0 ..< classes { maximum = max(maximum, Double(row[c]) / temperature) }
    var total = 0.0
    for c in 0 ..< classes { total += exp(Double(row[c]) / temperature - maximum) }
    return maximum + log(total)
}
