import ArgumentParser

/// Every method's option group (each in its method's folder), in `prune --help` order: beside the method registry
/// (`PruningMethods`). `vitforge prune` holds this one group and asks it for the group serving `--method`, so no
/// command names a method; a method with flags of its own adds one line here.
public struct MethodOptionGroups: ParsableArguments {
    @OptionGroup(title: VBPOptions.title) var vbp: VBPOptions
    @OptionGroup(title: SlimOptions.title) var slim: SlimOptions
    @OptionGroup(title: CPDOptions.title) var cpd: CPDOptions
    @OptionGroup(title: BaselineOptions.title) var baselines: BaselineOptions
    @OptionGroup(title: VulcanOptions.title) var vulcan: VulcanOptions

    public init() {}

    /// Every group, as `MethodOptions` (found by reflection, so a new line above joins without another list).
    public var all: [any MethodOptions] {
        Mirror(reflecting: self).children.compactMap { ($0.value as? MethodOptionGroup)?.methodOptions }
    }
}

/// An `@OptionGroup` property holding a method's flags.
private protocol MethodOptionGroup {
    var methodOptions: any MethodOptions { get }
}

extension OptionGroup: MethodOptionGroup where Value: MethodOptions {
    fileprivate var methodOptions: any MethodOptions { wrappedValue }
}
