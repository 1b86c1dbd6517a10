import Foundation
import ViTForgeDevice
import ViTForgeSupport
import ViTForgeTrain

/// Ctrl-C and progress for a long command: the first Ctrl-C stops training at the next step and every other pass
/// over data (evaluation, calibration, latency timing) at its next batch; those passes print rate and ETA.
func installInterruptHandling() {
    StopSignal.installInterruptHandler()
    PassMonitor.current = PassMonitor(shouldStop: { pass, batches in
        StopSignal.isRequested || FaultInjection.interruptsPass(pass, afterBatches: batches)
    })
}

/// What a run stopped by Ctrl-C says last: only the checkpoints that exist, and whether `--resume` has anything to
/// continue from.
func interruptionLine(_ what: String, checkpoints: [String]) -> String {
    let existing = checkpoints.filter { FileManager.default.fileExists(atPath: $0) }
    guard !existing.isEmpty else { return "\(what); nothing was written, run the command again to start over" }
    return "\(what); continue with --resume (checkpoint\(existing.count == 1 ? "" : "s") "
        + "\(existing.joined(separator: ", ")))"
}
