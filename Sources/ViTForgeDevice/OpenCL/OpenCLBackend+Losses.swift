import COpenCL

/// Cross-entropy with label smoothing and knowledge distillation (`Kernels/loss.cl`).
extension OpenCLBackend {
    // MARK: Losses

    public func uncheckedCrossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer,
                                             rows: Int, classes: Int, smoothing: Float) throws {
        try launchRows(.crossEntropyForward, .crossEntropyForwardWG, rows: rows, [
            .buffer(clMemory(logits)),
            .buffer(clMemory(labels)),
            .buffer(clMemory(probs)),
            .buffer(clMemory(losses)), try .int(rows), try .int(classes),
            .float(smoothing),
        ])
    }

    public func uncheckedCrossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer,
                                              rows: Int, classes: Int, smoothing: Float, scale: Float) throws {
        try launch(.crossEntropyBackward, columns: classes, rows: rows, [
            .buffer(clMemory(probs)),
            .buffer(clMemory(labels)),
            .buffer(clMemory(dLogits)), try .int(rows), try .int(classes),
            .float(smoothing), .float(scale),
        ])
    }

    public func uncheckedDistillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer,
                                             teacherProbs: Buffer, losses: Buffer, rows: Int, classes: Int,
                                             temperature: Float) throws {
        try launchRows(.distillationForward, .distillationForwardWG, rows: rows, [
            .buffer(clMemory(student)),
            .buffer(clMemory(teacher)),
            .buffer(clMemory(studentProbs)),
            .buffer(clMemory(teacherProbs)),
            .buffer(clMemory(losses)), try .int(rows), try .int(classes),
            .float(temperature),
        ])
    }

    public func uncheckedDistillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer,
                                              rows: Int, classes: Int, temperature: Float, scale: Float) throws {
        let count = rows * classes
        try launch(.distillationBackward, global: count, [
            .buffer(clMemory(studentProbs)),
            .buffer(clMemory(teacherProbs)),
            .buffer(clMemory(dStudent)), try .int(count),
            .float(scale * temperature),
        ])
    }
}
