import ArgumentParser
import ViTForgeTrain

/// The training flags `train` and `prune` share, declared once with one default each (`demo` trains with these
/// defaults): batch size, distillation weight and temperature, checkpoint interval.
struct TrainingFlags: ParsableArguments {
    @Option(help: "Images per batch (training; prune calibrates with it too).")
    var batchSize = 128

    @Option(help: "Distillation weight α.")
    var alpha = 0.5

    @Option(help: ArgumentHelp(
        "Distillation temperature T; the same default for train, prune and demo: the KD temperature of the "
            + "fine-tuning recipes the pruning methods follow (METHODS.md)."))
    var temperature = DistillationSettings.defaultTemperature

    @Option(help: "Write a training checkpoint every N steps (0: only at epoch ends and on Ctrl-C).")
    var checkpointEvery = 200

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must be ≥ 0") }
    }
}
