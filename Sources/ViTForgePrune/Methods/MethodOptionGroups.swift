import ArgumentParser

/// The method registry: one line per option group (each in its method's folder), in `--method` and `prune --help`
/// order. `PruningMethods.all` is every group's methods in turn, and `vitforge prune` holds this one group and asks
/// it for the group serving `--method`, so no command names a method: a new method is its folder plus one line here.
public struct MethodOptionGroups: ParsableArguments {
    @OptionGroup(title: VBPOptions.title) var vbp: VBPOptions
    @OptionGroup(title: SlimOptions.title) var slim: SlimOptions
    @OptionGroup(title: CPDOptions.title) var cpd: CPDOptions
    @OptionGroup(title: VulcanOptions.title) var vulcan: VulcanOptions
    @OptionGroup(title: BaselineOptions.title) var baselines: BaselineOptions

    public init() {}

    /// Every group (found by reflection, so that a new line above joins without another list).
    public var all: [any MethodOptions] {
        Mirror(reflecting: self).children.compactMap { ($0.value as? MethodOptionGroup)?.methodOptions }
    }

    /// The group serving `name`.
    public func group(for name: String) -> (any MethodOptions)? {
        all.first { type(of: $0).methods.contains { $0.name == name } }
    }

    /// Every group's type, in order, without parsing (the registry as `PruningMethods` reads it).
    static var groupTypes: [any MethodOptions.Type] {
        Mirror(reflecting: MethodOptionGroups()).children.compactMap { ($0.value as? MethodOptionGroup)?.groupType }
    }
}

/// An `@OptionGroup` property holding a method's flags.
private protocol MethodOptionGroup {
    var methodOptions: any MethodOptions { get }
    var groupType: any MethodOptions.Type { get }
}

extension OptionGroup: MethodOptionGroup where Value: MethodOptions {
    fileprivate var methodOptions: any MethodOptions { wrappedValue }
    fileprivate var groupType: any MethodOptions.Type { Value.self }
}
