import ArgumentParser
import ViTForgeModel
import ViTForgePrune

/// Prints the channel spaces and dependency groups derived from a model's structure.
struct GroupsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups",
        abstract: "Print a model's channel spaces and the (tensor, axis, indices) slices each group couples.",
        discussion: """
            Spaces: the residual width, and per block the heads, the q/k dims and v dims within a head, and the \
            MLP hidden neurons. By default one example group per space is shown; --all lists every group.
            """)

    @Argument(help: "The model (.safetensors, timm names).")
    var model: String

    @Option(help: "Heads per block, for a timm checkpoint without vitforge.config metadata.")
    var heads: Int?

    @Flag(help: "List every group, not only the first of each space.")
    var all = false

    func run() throws {
        try reportingErrors {
            let weights = try ViTWeights.load(path: model, heads: heads)
            print(try weights.config.channelSpaceDescription(allGroups: all))
        }
    }
}
