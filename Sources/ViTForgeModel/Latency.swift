import Foundation

/// The median and the fastest of timed runs: the one way ViTForge times anything (a prune report's images/s,
/// `vitforge bench`'s inference and training steps), so that their numbers compare.
public struct Latency: Sendable, Equatable {
    public var medianSeconds: Double
    public var minimumSeconds: Double

    /// Calls `body` `warmup` times untimed (kernel builds, first-touch page faults, BLAS thread start-up), then
    /// `runs` (at least 1) times on the monotonic clock. `body` must wait for the device itself (`synchronize`),
    /// or only the enqueueing is timed. An even number of runs reports the mean of the two middle ones.
    public static func measure(warmup: Int, runs: Int, _ body: () throws -> Void) rethrows -> Latency {
        for _ in 0 ..< warmup { try body() }
        var seconds: [Double] = []
        for _ in 0 ..< max(runs, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
        return Latency(medianSeconds: median(seconds), minimumSeconds: seconds.min()!)
    }

    /// The middle value of `seconds` (at least one), or the mean of the two middle ones for an even count.
    public static func median(_ seconds: [Double]) -> Double {
        let sorted = seconds.sorted(), middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
