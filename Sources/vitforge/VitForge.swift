import ArgumentParser

@main
struct VitForge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitforge",
        abstract: "Fine-tune and structurally prune Vision Transformers on OpenCL GPUs or the CPU.",
        subcommands: [])
}
