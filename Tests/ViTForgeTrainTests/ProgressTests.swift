import Testing
@testable import ViTForgeTrain

struct ProgressTests {
    static let sample = TrainingProgress(step: 649, totalSteps: 3283, epoch: 2, epochs: 7, batchInEpoch: 180,
                                         batchesPerEpoch: 469, loss: 0.61234, learningRate: 9.71e-4,
                                         imagesPerSecond: 2144.3, etaSeconds: 243)

    @Test("plain and terminal lines")
    func lines() {
        #expect(ProgressPrinter.plainLine(Self.sample)
                == "epoch 2/7 step 649/3283 batch 180/469 loss 0.6123 lr 9.71e-04 2144.3 img/s ETA 4m03s")
        #expect(ProgressPrinter.terminalLine(Self.sample, barWidth: 10)
                == "epoch 2/7 [###.......] 180/469 step 649/3283 loss 0.6123 2144 img/s ETA 4m03s")
    }

    @Test("durations", arguments: [(0.4, "0s"), (59, "59s"), (61, "1m01s"), (7500, "2h05m"), (-1, "?"), (.nan, "?")])
    func durations(seconds: Double, text: String) {
        #expect(ProgressPrinter.duration(seconds) == text)
    }

    @Test("without a terminal: one line every N steps and at each epoch's end")
    func plainCadence() {
        var written: [String] = []
        let printer = ProgressPrinter(interactive: false, plainEvery: 3, write: { written.append($0) })
        for step in 1 ... 8 {
            var progress = Self.sample
            progress.step = step
            progress.batchInEpoch = (step - 1) % 4 + 1
            progress.batchesPerEpoch = 4
            printer.report(progress)
        }
        // Steps 3, 6 (every 3) and 4, 8 (epoch ends).
        #expect(written.count == 4 && written.allSatisfy { $0.hasSuffix("\n") && $0.hasPrefix("epoch ") })
    }

    @Test("on a terminal: redrawn in place, a newline when the epoch completes")
    func terminalRedraw() {
        var written: [String] = []
        let printer = ProgressPrinter(interactive: true, write: { written.append($0) })
        var progress = Self.sample
        progress.batchInEpoch = progress.batchesPerEpoch
        printer.report(progress)
        printer.finish()
        #expect(written.count == 1 && written[0].hasPrefix("\r\u{1B}[2K") && written[0].hasSuffix("\n"))
    }

    @Test("a report without a loss shows the latest one read; the cadence reads on the printer's lines")
    func lossBetweenReads() {
        var written: [String] = []
        let printer = ProgressPrinter(interactive: false, plainEvery: 2, write: { written.append($0) })
        var progress = Self.sample
        progress.batchesPerEpoch = 100
        progress.step = 1
        progress.loss = nil
        printer.report(progress)  // not a plain line's step: nothing
        progress.step = 2
        printer.report(progress)  // a line before any read: "loss -"
        progress.step = 3
        progress.loss = 0.5
        printer.report(progress)
        progress.step = 4
        progress.loss = nil
        printer.report(progress)
        #expect(written.count == 2 && written[0].contains("loss - ") && written[1].contains("loss 0.5000 "))
        // Off a terminal the loss is also read for the line after 10 s of work without one.
        #expect(printer.lossCadence == ProgressLossCadence(steps: 2, seconds: 10))
        #expect(ProgressPrinter(interactive: true, plainEvery: 50, write: { _ in }).lossCadence.seconds == 1)
        let cadence = ProgressLossCadence(steps: 4, seconds: 1)
        #expect(cadence.reads(step: 8, epochDone: false, secondsSinceRead: 0))
        #expect(cadence.reads(step: 3, epochDone: true, secondsSinceRead: 0))
        #expect(cadence.reads(step: 3, epochDone: false, secondsSinceRead: 1.5))
        #expect(!cadence.reads(step: 3, epochDone: false, secondsSinceRead: 0.5))
    }
}
