import ArgumentParser
import ViTForgeFormats
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
            The spaces are checked against the groups CPD's rules (METHODS.md §4.b) derive from the layer graph: \
            coupling operations (residual adds, token concat, LayerNorm, GELU, q·kᵀ, attention·v) force equal \
            channel indices, stop operations (every linear layer) consume a space on their input axis. --comb \
            prints those derived groups as CPD writes them (out_group: axes that carry the channels, \
            out_in_group: input axes of the layers that read them).
            """)

    @Argument(help: "The model (.safetensors, timm names).")
    var model: String

    @Option(help: "Heads per block, for a timm checkpoint without vitforge.config metadata.")
    var heads: Int?

    @Flag(help: "List every group, not only the first of each space.")
    var all = false

    @Flag(help: "Print the groups derived from the layer graph by CPD's rules, as JSON (out_group, out_in_group).")
    var comb = false

    func run() throws {
        try reportingErrors {
            let weights = try ViTWeights.load(path: model, heads: heads)
            if comb {
                print(Comb.json(try Comb.groups(of: weights.config)))
            } else {
                print(try weights.config.channelSpaceDescription(allGroups: all))
            }
        }
    }
}
