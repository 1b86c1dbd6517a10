import Foundation

/// Ctrl-C seen during a pass over data that is not a training step (evaluation, calibration, latency timing): the
/// pass stopped at the batch boundary after `done` of `total`, and nothing of it was kept.
public struct PassInterrupted: Error, CustomStringConvertible {
    public let pass: String
    public let done: Int
    public let total: Int

    public var description: String { "interrupted during \(pass) (\(done) of \(total) done)" }
}

/// Progress and Ctrl-C for the passes over data that training's `ProgressPrinter` does not see: evaluation,
/// calibration statistics and gradients, latency timing. Each pass reports after every batch; the monitor prints
/// rate and ETA (on a terminal one line redrawn in place, otherwise a plain line at least every `plainEverySeconds`
/// of work and one at the pass's end) and asks `shouldStop`, which makes the pass throw `PassInterrupted` at that
/// batch boundary.
///
/// One monitor per process, like `StopSignal`: the CLI installs it with its interrupt handler. Without one
/// (libraries, tests of other things) passes run silent and cannot be interrupted, so a Ctrl-C raised by one test's
/// training cannot stop another test's evaluation.
public final class PassMonitor {
    nonisolated(unsafe) public static var current: PassMonitor?

    public let interactive: Bool
    public let plainEverySeconds: Double
    private let clock: () -> Double
    private let write: (String) -> Void
    private let shouldStop: (_ pass: String, _ batchesDone: Int) -> Bool

    /// - Parameters:
    ///   - clock: seconds on any monotonic scale (tests step it by hand).
    ///   - shouldStop: asked after every batch of a pass with the batches it has done; the default is Ctrl-C.
    public init(interactive: Bool = isatty(2) != 0, plainEverySeconds: Double = 10,
                clock: @escaping () -> Double = PassMonitor.monotonicSeconds, write: ((String) -> Void)? = nil,
                shouldStop: @escaping (_ pass: String, _ batchesDone: Int) -> Bool = { _, _ in StopSignal.isRequested }) {
        self.interactive = interactive
        self.plainEverySeconds = plainEverySeconds
        self.clock = clock
        let silent = !Collectives.world.isMain
        self.write = write ?? { text in if !silent { FileHandle.standardError.write(Data(text.utf8)) } }
        self.shouldStop = shouldStop
    }

    public static func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    /// Starts a pass of `total` `unit`s through the installed monitor (a silent, uninterruptible one without).
    public static func begin(_ name: String, total: Int, unit: String = "images") -> PassProgress {
        current?.begin(name, total: total, unit: unit) ?? PassProgress(monitor: nil, name: name, total: total, unit: unit)
    }

    /// Starts a pass through this monitor.
    public func begin(_ name: String, total: Int, unit: String = "images") -> PassProgress {
        PassProgress(monitor: self, name: name, total: total, unit: unit)
    }

    fileprivate func now() -> Double { clock() }
    fileprivate func emit(_ text: String) { write(text) }
    fileprivate func stops(_ pass: String, _ batches: Int) -> Bool { shouldStop(pass, batches) }

    /// `evaluation 512/10000 images 850.3 images/s ETA 11s`
    public static func line(_ name: String, done: Int, total: Int, unit: String, seconds: Double) -> String {
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let eta = rate > 0 ? Double(total - done) / rate : .infinity
        return "\(name) \(done)/\(total) \(unit) \(String(format: "%.1f", rate)) \(unit)/s "
            + "ETA \(ProgressPrinter.duration(eta))"
    }

    /// `evaluation done: 10000 images in 11.8s (850.3 images/s)`
    public static func endLine(_ name: String, done: Int, unit: String, seconds: Double) -> String {
        let rate = seconds > 0 ? Double(done) / seconds : 0
        return "\(name) done: \(done) \(unit) in \(String(format: "%.1f", seconds))s (\(String(format: "%.1f", rate)) "
            + "\(unit)/s)"
    }
}

/// One pass's progress: `advance` after every batch, `end` once.
public final class PassProgress {
    private let monitor: PassMonitor?
    public let name: String
    public let total: Int
    public let unit: String
    public private(set) var done = 0
    public private(set) var batches = 0
    private let started: Double
    private var lastLine: Double
    private var drewLine = false

    init(monitor: PassMonitor?, name: String, total: Int, unit: String) {
        self.monitor = monitor
        self.name = name
        self.total = total
        self.unit = unit
        started = monitor?.now() ?? 0
        lastLine = started
    }

    /// Records `count` more units done; throws `PassInterrupted` when the monitor says stop (Ctrl-C).
    public func advance(_ count: Int) throws {
        guard let monitor else { return }
        done += count
        batches += 1
        let now = monitor.now()
        let line = PassMonitor.line(name, done: done, total: total, unit: unit, seconds: now - started)
        if monitor.interactive {
            // At most 10 redraws a second, like the training line.
            if now - lastLine >= 0.1 || done >= total {
                monitor.emit("\r\u{1B}[2K" + line)
                drewLine = true
                lastLine = now
            }
        } else if now - lastLine >= monitor.plainEverySeconds {
            monitor.emit(line + "\n")
            lastLine = now
        }
        if monitor.stops(name, batches) {
            if drewLine { monitor.emit("\n") }
            drewLine = false
            throw PassInterrupted(pass: name, done: done, total: total)
        }
    }

    /// Ends the pass with its summary line.
    public func end() {
        guard let monitor else { return }
        let seconds = monitor.now() - started
        monitor.emit((monitor.interactive && drewLine ? "\r\u{1B}[2K" : "")
                     + PassMonitor.endLine(name, done: done, unit: unit, seconds: seconds) + "\n")
        drewLine = false
    }
}
