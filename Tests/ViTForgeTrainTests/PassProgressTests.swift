import Testing
@testable import ViTForgeTrain

/// Progress and Ctrl-C for passes over data (evaluation, calibration, latency), with an injected clock and an
/// injected stop instead of wall time and signals.
struct PassProgressTests {
    /// A clock the test moves by hand.
    final class ManualClock: @unchecked Sendable {
        var seconds = 100.0
    }

    final class Lines: @unchecked Sendable {
        var text = ""
    }

    @Test("off a terminal: a plain line with rate and ETA after every 10 s of work, and one at the pass's end")
    func plainLines() throws {
        let clock = ManualClock(), lines = Lines()
        let monitor = PassMonitor(interactive: false, clock: { clock.seconds }, write: { lines.text += $0 },
                                  shouldStop: { _, _ in false })
        let pass = monitor.begin("evaluation", total: 37)
        // Batches of 7 images (the last 2), each taking 3 s: 10 s of work is crossed at batch 4 (12 s).
        for count in [7, 7, 7, 7, 7, 2] {
            clock.seconds += 3
            try pass.advance(count)
        }
        clock.seconds += 0.5
        pass.end()
        #expect(lines.text.split(separator: "\n") == [
            "evaluation 28/37 images 2.3 images/s ETA 4s",
            "evaluation done: 37 images in 18.5s (2.0 images/s)",
        ])
    }

    @Test("on a terminal: one line redrawn in place, then the summary on its own line")
    func terminalLine() throws {
        let clock = ManualClock(), lines = Lines()
        let monitor = PassMonitor(interactive: true, clock: { clock.seconds }, write: { lines.text += $0 },
                                  shouldStop: { _, _ in false })
        let pass = monitor.begin("calibration", total: 13)
        clock.seconds += 1
        try pass.advance(13)
        pass.end()
        #expect(lines.text == "\r\u{1B}[2Kcalibration 13/13 images 13.0 images/s ETA 0s"
                + "\r\u{1B}[2Kcalibration done: 13 images in 1.0s (13.0 images/s)\n")
    }

    @Test("a stop requested after N batches ends the pass at that batch boundary", arguments: [1, 3])
    func stopAfterBatches(batches: Int) throws {
        let clock = ManualClock(), lines = Lines()
        let monitor = PassMonitor(interactive: false, clock: { clock.seconds }, write: { lines.text += $0 },
                                  shouldStop: { pass, done in pass == "calibration" && done >= batches })
        let other = monitor.begin("evaluation", total: 14)
        try other.advance(7)
        try other.advance(7)
        let pass = monitor.begin("calibration", total: 37)
        var finished = 0
        do {
            for _ in 0..<6 {
                try pass.advance(7)
                finished += 1
            }
            Issue.record("the pass was not stopped")
        } catch let interrupted as PassInterrupted {
            #expect(finished == batches - 1)
            #expect(interrupted.description == "interrupted during calibration (\(7 * batches) of 37 done)")
        }
    }

    @Test("without a monitor a pass is silent and cannot be stopped")
    func noMonitor() throws {
        let pass = PassProgress(monitor: nil, name: "evaluation", total: 3, unit: "images")
        for _ in 0..<3 { try pass.advance(1) }
        pass.end()
        #expect(pass.done == 0)
    }

    @Test("training progress off a terminal: a line after 10 s of work even between the every-N-steps lines")
    func trainingPlainCadence() {
        let clock = ManualClock(), lines = Lines()
        let printer = ProgressPrinter(interactive: false, plainEvery: 50, clock: { clock.seconds },
                                      write: { lines.text += $0 })
        // 7 steps of 4 s each in an epoch of 9 batches: lines at 12 s (step 4) and 24 s (step 7).
        for step in 1...7 {
            printer.report(TrainingProgress(step: step, totalSteps: 9, epoch: 1, epochs: 1, batchInEpoch: step,
                                            batchesPerEpoch: 9, loss: nil, learningRate: 1e-3, imagesPerSecond: 10,
                                            etaSeconds: 8))
            clock.seconds += 4
        }
        let steps = lines.text.split(separator: "\n").map { $0.split(separator: " ")[3] }
        #expect(steps == ["4/9", "7/9"], "\(lines.text)")
    }
}
