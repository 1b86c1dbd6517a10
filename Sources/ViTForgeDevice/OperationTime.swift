/// One operation's time in a profile: a recording of `OperationTimeline` (wall time per device operation) or an
/// OpenCL queue's profile (`OpenCLBackend.takeProfile()`: device time per kernel and CLBlast GEMM shape).
public struct OperationTime: Codable, Sendable {
    /// The operation's name (`gemm`, `layerNormForward`, …) or `OperationTimeline.hostName`; in an OpenCL profile,
    /// the kernel's name in `Kernels/*.cl`, or `sgemm …` with the GEMM's transposes and m×n×k (×batch).
    public var name: String
    public var calls: Int
    /// The calls' times summed, in milliseconds.
    public var milliseconds: Double

    enum CodingKeys: String, CodingKey {
        case name, calls
        case milliseconds = "ms"
    }

    /// Records from totals per name, largest time first (ties by name).
    static func records(_ totals: [String: (calls: Int, nanoseconds: UInt64)]) -> [OperationTime] {
        totals.map { OperationTime(name: $0.key, calls: $0.value.calls,
                                   milliseconds: Double($0.value.nanoseconds) / 1e6) }
            .sorted { ($0.milliseconds, $1.name) > ($1.milliseconds, $0.name) }
    }

    /// The family an `OperationTimeline` operation belongs to, for a step's breakdown: GEMM, attention, LayerNorm,
    /// bias+GELU, elementwise, loss, AdamW, gradient norms, masks, copies, host.
    public var category: String {
        switch name {
        case "gemm", "gemmStridedBatched": return "GEMM"
        case "attentionForward", "attentionBackward", "softmaxForward", "softmaxBackward": return "attention"
        case "layerNormForward", "layerNormBackward", "maskedLayerNormForward", "maskedLayerNormBackward",
             "residualLayerNormForward":
            return "LayerNorm"
        case "biasGeluForward", "biasGeluBackward": return "bias+GELU"
        case "add", "axpy", "scale", "addBias", "addBiasBackward", "addScaledSign", "scaleRows", "scaleColumns":
            return "elementwise"
        case "crossEntropyForward", "crossEntropyBackward", "distillationForward", "distillationBackward":
            return "loss"
        case "adamwStep": return "AdamW"
        case "accumulateSum", "clipScale", "sum", "sumOfSquares", "sumOfAbs": return "gradient norms"
        case "maskGradient", "maskGradientRows": return "masks"
        case "copy", "upload", "uploadAsync", "download", "fill", "gather", "scatterAdd", "allocate", "makeStaging":
            return "copies"
        case OperationTimeline.hostName: return "host"
        default: return "other"
        }
    }
}
