import ArgumentParser

@main
struct VitForge: ParsableCommand {
    /// Recorded in every report.
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "vitforge",
        abstract: "Fine-tune and structurally prune Vision Transformers on OpenCL GPUs or the CPU.",
        discussion: """
            Every command takes --device (auto, cpu, opencl, opencl:P.D; default: $VITFORGE_DEVICE, else auto) \
            and --seed. `vitforge devices` lists what is available and what auto picks. The CPU backend's matrix \
            products run on oneDNN where it is installed, else on OpenBLAS; VITFORGE_GEMM=openblas or onednn pins \
            one library, auto takes the faster of the two per shape (measured once per machine and cached); reports \
            and checkpoints record it.
            """,
        version: version,
        subcommands: [DevicesCommand.self, InfoCommand.self, InferCommand.self, GradCommand.self, EvalCommand.self,
                      TrainCommand.self, PruneCommand.self, DemoCommand.self, GroupsCommand.self, BenchCommand.self,
                      ReportCommand.self, ExportCommand.self, PredictCommand.self,
                      AllReduceBenchCommand.self])
}
