/// What a training checkpoint records of the CPU backend's GEMM library (`VITFORGE_GEMM`), so that a run resumed
/// from it multiplies as the part before the checkpoint did: the setting, and under `auto` the per-shape choices
/// made so far (which a resume on another machine, or after the choice file was deleted, adopts instead of
/// measuring its own).
public struct GemmRecord: Codable, Equatable, Sendable {
    /// `openblas`, `onednn` or `auto`.
    public var setting: String
    /// Under `auto`: `GemmChoiceTable`'s lines (`NT m n k lda ldb ldc beta0|beta1 openblas|onednn`).
    public var choices: [String]?

    public init(setting: String, choices: [String]? = nil) {
        self.setting = setting
        self.choices = choices
    }
}

extension CPUBackend {
    /// This backend's selection, for a checkpoint.
    public var gemmRecord: GemmRecord {
        GemmRecord(setting: gemm.setting, choices: gemm == .auto ? GemmChoiceTable.shared.lines : nil)
    }

    /// Continues a run from a checkpoint written under `record`: the products use the record's selection (and
    /// choices), unless `VITFORGE_GEMM` pins another one, which wins with one warning (the result may then differ
    /// in the last bits from an uninterrupted run); a switch is one `note` line. `checkpoint` names the file in
    /// messages; `pinnedByUser` is whether `VITFORGE_GEMM` is set (a parameter for the tests, which cannot set it
    /// without affecting others).
    public func continueGemm(_ record: GemmRecord, checkpoint: String,
                             pinnedByUser: Bool = GemmSelection.isPinnedByEnvironment,
                             warn: (String) -> Void = DeviceSelection.printWarning,
                             note: (String) -> Void = { print($0) }) throws {
        guard case .success(let saved) = GemmSelection.parse(record.setting) else {
            throw BackendError.invalidArgument("\(checkpoint): unknown GEMM setting \"\(record.setting)\" "
                                               + "(expected openblas, onednn or auto)")
        }
        if saved != gemm {
            let variable = GemmSelection.variable
            if pinnedByUser {
                warn("\(checkpoint) was written with \(variable)=\(saved.setting); continuing with \(variable)="
                     + "\(gemm.setting) as set, so the result may differ in its last bits from an uninterrupted run")
                return
            }
            if let problem = saved.problem {
                throw BackendError.invalidArgument("\(checkpoint) was written with \(variable)=\(saved.setting), "
                                                   + "but \(problem); set \(variable)=\(gemm.setting) to continue "
                                                   + "on \(gemm.label)")
            }
            try useGemm(saved)
            note("\(checkpoint) was written with \(variable)=\(saved.setting): continuing on \(saved.label)")
        }
        if saved == .auto, let choices = record.choices { GemmChoiceTable.shared.adopt(choices) }
    }
}
