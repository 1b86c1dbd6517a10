import Foundation

/// Where a run stands after a step; `Trainer.onProgress` receives one per step.
public struct TrainingProgress: Equatable, Sendable {
    /// Optimizer steps completed, of `totalSteps`.
    public var step: Int
    public var totalSteps: Int
    /// 1-based epoch of that step, of `epochs`.
    public var epoch: Int
    public var epochs: Int
    /// Batches of this epoch completed, of `batchesPerEpoch`.
    public var batchInEpoch: Int
    public var batchesPerEpoch: Int
    /// The mean loss (before each update) of the steps since the previous report that carried one; nil when this
    /// step did not read it back from the device (see `Trainer.progressLoss`).
    public var loss: Double?
    public var learningRate: Double
    /// Since this process started (or resumed) the run.
    public var imagesPerSecond: Double
    public var etaSeconds: Double

    public init(step: Int, totalSteps: Int, epoch: Int, epochs: Int, batchInEpoch: Int, batchesPerEpoch: Int,
                loss: Double?, learningRate: Double, imagesPerSecond: Double, etaSeconds: Double) {
        self.step = step
        self.totalSteps = totalSteps
        self.epoch = epoch
        self.epochs = epochs
        self.batchInEpoch = batchInEpoch
        self.batchesPerEpoch = batchesPerEpoch
        self.loss = loss
        self.learningRate = learningRate
        self.imagesPerSecond = imagesPerSecond
        self.etaSeconds = etaSeconds
    }
}

/// Which steps' progress reports carry the loss (`Trainer.progressLoss`): every `steps` steps, each epoch's last
/// step, and, with `seconds`, the first step that long after the previous read. Each is one wait for the device.
public struct ProgressLossCadence: Equatable, Sendable {
    public var steps: Int
    public var seconds: Double?

    public init(steps: Int = 50, seconds: Double? = nil) {
        self.steps = max(1, steps)
        self.seconds = seconds
    }

    public func reads(step: Int, epochDone: Bool, secondsSinceRead: Double) -> Bool {
        epochDone || step % steps == 0 || seconds.map { secondsSinceRead >= $0 } == true
    }
}

/// Renders progress on stderr: on a terminal one line redrawn in place (a bar for the epoch, epoch, step, loss,
/// images/s, ETA), at most 10 times a second so drawing never costs a step; otherwise (a log file, CI) one plain
/// line every `plainEvery` steps, after `plainEverySeconds` of work without one, and at each epoch's last step. Lives in the training layer, not the CLI, because
/// pruning's fine-tuning reports through it too and the layers above may only look down.
public final class ProgressPrinter {
    public let interactive: Bool
    public let plainEvery: Int
    public let barWidth: Int
    public let plainEverySeconds: Double
    private let clock: () -> Double
    private var lastPlainLine: Double?
    private var lastDraw: UInt64 = 0
    private var drewLine = false
    /// The latest loss a report carried, shown by the reports that carry none.
    private var lastLoss: Double?
    private let write: (String) -> Void

    /// `interactive` defaults to whether stderr is a terminal; `write` defaults to stderr (tests capture it), and
    /// to nothing on the ranks but 0 of a data-parallel run, which all report the same steps.
    /// `clock` is seconds on any monotonic scale (tests step it by hand).
    public init(interactive: Bool = isatty(2) != 0, plainEvery: Int = 50, barWidth: Int = 24,
                plainEverySeconds: Double = 10, clock: @escaping () -> Double = PassMonitor.monotonicSeconds,
                write: ((String) -> Void)? = nil) {
        self.interactive = interactive
        self.plainEvery = max(1, plainEvery)
        self.barWidth = max(1, barWidth)
        self.plainEverySeconds = plainEverySeconds
        self.clock = clock
        let silent = !Collectives.world.isMain
        self.write = write ?? { text in if !silent { FileHandle.standardError.write(Data(text.utf8)) } }
    }

    /// The loss reads these lines need: the plain lines' steps, and on a terminal also once a second (the line is
    /// redrawn more often, with the latest loss read).
    public var lossCadence: ProgressLossCadence {
        ProgressLossCadence(steps: plainEvery, seconds: interactive ? 1 : plainEverySeconds)
    }

    public func report(_ progress: TrainingProgress) {
        var progress = progress
        if let loss = progress.loss { lastLoss = loss } else { progress.loss = lastLoss }
        let epochDone = progress.batchInEpoch == progress.batchesPerEpoch
        if interactive {
            let now = DispatchTime.now().uptimeNanoseconds
            guard epochDone || now - lastDraw >= 100_000_000 else { return }
            lastDraw = now
            // Carriage return + erase line, then the line; a newline once the epoch is complete keeps its summary.
            write("\r\u{1B}[2K" + Self.terminalLine(progress, barWidth: barWidth) + (epochDone ? "\n" : ""))
            drewLine = !epochDone
        } else {
            // The first report starts the clock: a slow first step is not "work without a line" yet.
            let now = clock()
            let started = lastPlainLine ?? now
            if lastPlainLine == nil { lastPlainLine = now }
            if progress.step % plainEvery == 0 || epochDone || now - started >= plainEverySeconds {
                write(Self.plainLine(progress) + "\n")
                lastPlainLine = now
            }
        }
    }

    /// Ends a redrawn line (before other output, or at the end of the run).
    public func finish() {
        if interactive && drewLine { write("\n") }
        drewLine = false
    }

    /// `epoch 2/7 [#########...............] 180/469 step 649/3283 loss 0.6123 2144 img/s ETA 4m03s`
    public static func terminalLine(_ p: TrainingProgress, barWidth: Int) -> String {
        let filled = p.batchesPerEpoch > 0 ? min(barWidth, barWidth * p.batchInEpoch / p.batchesPerEpoch) : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled)
        return "epoch \(p.epoch)/\(p.epochs) [\(bar)] \(p.batchInEpoch)/\(p.batchesPerEpoch) "
            + "step \(p.step)/\(p.totalSteps) loss \(lossText(p.loss)) "
            + "\(String(format: "%.0f", p.imagesPerSecond)) img/s ETA \(duration(p.etaSeconds))"
    }

    /// `epoch 2/7 step 649/3283 batch 180/469 loss 0.6123 lr 9.71e-04 2144.3 img/s ETA 4m03s`
    public static func plainLine(_ p: TrainingProgress) -> String {
        "epoch \(p.epoch)/\(p.epochs) step \(p.step)/\(p.totalSteps) batch \(p.batchInEpoch)/\(p.batchesPerEpoch) "
            + "loss \(lossText(p.loss)) lr \(String(format: "%.2e", p.learningRate)) "
            + "\(String(format: "%.1f", p.imagesPerSecond)) img/s ETA \(duration(p.etaSeconds))"
    }

    /// `0.6123`, or `-` before the first read.
    static func lossText(_ loss: Double?) -> String {
        loss.map { String(format: "%.4f", $0) } ?? "-"
    }

    /// `59s`, `4m03s`, `2h05m`.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let total = Int(seconds.rounded())
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m" + String(format: "%02d", total % 60) + "s" }
        return "\(total / 3600)h" + String(format: "%02d", total % 3600 / 60) + "m"
    }
}
