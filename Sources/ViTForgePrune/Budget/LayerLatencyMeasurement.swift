import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport
import ViTForgeTrain

/// Times every shape a `LayerLatencyTable` reads for one model on one backend (`vitforge bench --latency-table`):
/// a linear layer as its GEMM and bias add (`Linear.forward`), attention as the fused core
/// (`attentionForward`), both at the table's batch, on zeros (a GEMM's time does not depend on the values).
///
/// On a shared machine one slow second must not make one width look slow: every shape is timed once per round and
/// the shapes alternate within each round (odd rounds in reverse order, so that no shape always follows the same
/// one); each entry is the median of its rounds. A shape too fast for the clock is repeated within its sample (to
/// about `sampleMilliseconds`) and divided.
public enum LayerLatencyMeasurement {
    /// Every width from 1 to the parent's: the rounding rule may then pick any count a method asks for.
    public static let widthsDescription = "every width from 1 to the parent's (MLP neurons, per-head q/k and v dims)"

    /// The table of `config` at `batch` on `backend`. With `costModel` (under `VITFORGE_FAULT_LATENCY_MS_PER_GMAC`
    /// in a fault-injection build, as `LatencyMeter`) no clock is read: each shape costs that many milliseconds
    /// per 10⁹ of its MACs (`BlockCost`'s convention), so a table and the meter's cost model agree on every layer
    /// they share, and what the table leaves out (patch embedding, head) is what they disagree on.
    public static func measure(config: ViTConfig, batch: Int, rounds: Int, backend: Backend,
                               sampleMilliseconds: Double = 2, progress: PassProgress? = nil,
                               costModel: Double? = FaultInjection.latencyMillisecondsPerGMAC) throws
        -> LayerLatencyTable {
        let parent = try LayerLatencyTable.ParentShape(config)
        let shapes = LayerLatencyTable.shapes(parent: parent, batch: batch) { Array(1 ... max(1, $0)) }
        let rows = batch * parent.tokens
        if let perGMAC = costModel {
            let tokens = parent.tokens, perMAC = perGMAC / 1e9
            return LayerLatencyTable(
                device: .init(current: backend), batch: batch, parent: parent, widths: widthsDescription, rounds: 1,
                linear: shapes.linear.map { .init($0, milliseconds: perMAC * Double(rows * $0.inWidth * $0.outWidth)) },
                attention: shapes.attention.map { key in
                    let macs = batch * tokens * tokens * key.heads * (key.qkDim + key.vDim)
                    return .init(key, milliseconds: perMAC * Double(macs))
                })
        }
        // One set of buffers, as large as the largest shape reads.
        let maxIn = shapes.linear.map(\.inWidth).max() ?? 1, maxOut = shapes.linear.map(\.outWidth).max() ?? 1
        let layouts = shapes.attention.map { QKVLayout(qkDims: [Int](repeating: $0.qkDim, count: $0.heads),
                                                       vDims: [Int](repeating: $0.vDim, count: $0.heads)) }
        let maxQKV = layouts.map(\.qkvFeatures).max() ?? 1, maxV = layouts.map(\.totalV).max() ?? 1
        let maxHeads = shapes.attention.map(\.heads).max() ?? 1
        let x = try backend.zeros(rows * max(maxIn, maxQKV))
        let weight = try backend.zeros(maxIn * maxOut)
        let bias = try backend.zeros(maxOut)
        let out = try backend.zeros(rows * max(maxOut, maxV))
        let logSumExp = try backend.zeros(maxHeads * rows)

        var operations: [() throws -> Void] = shapes.linear.map { key in
            return {
                try backend.gemm(GemmSpec(m: key.rows, n: key.outWidth, k: key.inWidth, transB: true), a: x, b: weight,
                                 c: out)
                try backend.addBias(out, bias: bias, rows: key.rows, cols: key.outWidth)
            }
        }
        operations += layouts.map { layout -> () throws -> Void in
            return { try backend.attentionForward(qkv: x, layout: layout, batch: batch, tokens: parent.tokens, scale: 1,
                                           out: out, logSumExp: logSumExp) }
        }
        // Warm-up and the repeats per sample, from one timed run of each shape.
        var repeats: [Int] = []
        for operation in operations {
            try operation()
            let once = try time(operation, repeats: 1, backend: backend)
            repeats.append(max(1, Int((sampleMilliseconds / max(once, 1e-6)).rounded(.up))))
        }
        var samples = [[Double]](repeating: [], count: operations.count)
        for round in 0 ..< max(1, rounds) {
            let order = round % 2 == 0 ? Array(operations.indices) : Array(operations.indices.reversed())
            for index in order {
                samples[index].append(try time(operations[index], repeats: repeats[index], backend: backend))
            }
            try progress?.advance(1)
        }
        let milliseconds = samples.map(median)
        let linearCount = shapes.linear.count
        return LayerLatencyTable(
            device: .init(current: backend), batch: batch, parent: parent, widths: widthsDescription,
            rounds: max(1, rounds),
            linear: zip(shapes.linear, milliseconds.prefix(linearCount)).map { .init($0, milliseconds: $1) },
            attention: zip(shapes.attention, milliseconds.dropFirst(linearCount)).map { .init($0, milliseconds: $1) })
    }

    /// Milliseconds of one run of `operation`, from `repeats` runs back to back (the device waited for at the end).
    private static func time(_ operation: () throws -> Void, repeats: Int, backend: Backend) throws -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0 ..< repeats { try operation() }
        try backend.synchronize()
        return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-6 / Double(repeats)
    }

    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted(), middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
