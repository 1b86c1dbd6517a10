import ArgumentParser

/// The method registry: one line per option group (each in its method's folder), in `--method` and `prune --help`
/// order. `PruningMethods.all` is every group's methods in turn, and `vitforge prune` holds this one group and asks
/// it for the group serving `--method`, so no command names a method: a new method is its folder plus one line here
/// (`NoMethodFlags<M>` for a method without flags of its own).
public struct MethodOptionGroups: MethodRegistry {
    @OptionGroup(title: VBPOptions.title) var vbp: VBPOptions
    @OptionGroup(title: SlimOptions.title) var slim: SlimOptions
    @OptionGroup(title: CPDOptions.title) var cpd: CPDOptions
    @OptionGroup(title: VulcanOptions.title) var vulcan: VulcanOptions
    @OptionGroup(title: BaselineOptions.title) var baselines: BaselineOptions
    @OptionGroup var obs: NoMethodFlags<OBSPruning>

    public init() {}
}
