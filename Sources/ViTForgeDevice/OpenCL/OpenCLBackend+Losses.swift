import COpenCL

/// Cross-entropy with label smoothing and knowledge distillation (`Kernels/loss.cl`).
extension OpenCLBackend {
    // MARK: Losses

    public func crossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer,
                                    rows: Int, classes: Int, smoothing: Float) throws {
        let op = "crossEntropyForward"
        let count = try size(rows, classes, op)
        try launchRows(.crossEntropyForward, .crossEntropyForwardWG, rows: rows, [
            .buffer(try checked(logits, op, "logits", count: count)),
            .buffer(try checked(labels, op, "labels", count: rows)),
            .buffer(try checked(probs, op, "probs", count: count)),
            .buffer(try checked(losses, op, "losses", count: rows)), try .int(rows), try .int(classes),
            .float(smoothing),
        ])
    }

    public func crossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer,
                                     rows: Int, classes: Int, smoothing: Float, scale: Float) throws {
        let op = "crossEntropyBackward"
        let count = try size(rows, classes, op)
        try launch(.crossEntropyBackward, columns: classes, rows: rows, [
            .buffer(try checked(probs, op, "probs", count: count)),
            .buffer(try checked(labels, op, "labels", count: rows)),
            .buffer(try checked(dLogits, op, "dLogits", count: count)), try .int(rows), try .int(classes),
            .float(smoothing), .float(scale),
        ])
    }

    public func distillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer, teacherProbs: Buffer,
                                    losses: Buffer, rows: Int, classes: Int, temperature: Float) throws {
        let op = "distillationForward"
        let count = try size(rows, classes, op)
        guard temperature > 0 else { throw BackendError.invalidArgument("\(op): temperature \(temperature) ≤ 0") }
        try launchRows(.distillationForward, .distillationForwardWG, rows: rows, [
            .buffer(try checked(student, op, "student", count: count)),
            .buffer(try checked(teacher, op, "teacher", count: count)),
            .buffer(try checked(studentProbs, op, "studentProbs", count: count)),
            .buffer(try checked(teacherProbs, op, "teacherProbs", count: count)),
            .buffer(try checked(losses, op, "losses", count: rows)), try .int(rows), try .int(classes),
            .float(temperature),
        ])
    }

    public func distillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer,
                                     rows: Int, classes: Int, temperature: Float, scale: Float) throws {
        let op = "distillationBackward"
        let count = try size(rows, classes, op)
        try launch(.distillationBackward, global: count, [
            .buffer(try checked(studentProbs, op, "studentProbs", count: count)),
            .buffer(try checked(teacherProbs, op, "teacherProbs", count: count)),
            .buffer(try checked(dStudent, op, "dStudent", count: count)), try .int(count),
            .float(scale * temperature),
        ])
    }
}
