import ArgumentParser

/// A list of method option groups, one `@OptionGroup` line each, found by reflection so that a new line joins
/// without another list. A registry may also be one line of another, which then extends it (the tests add their
/// method to the built-in registry, `MethodOptionGroups`, that way).
public protocol MethodRegistry: ParsableArguments {}

extension MethodRegistry {
    /// Every group, parsed, in line order.
    public var groups: [any MethodOptions] {
        Mirror(reflecting: self).children.flatMap { child -> [any MethodOptions] in
            if let line = child.value as? MethodGroupLine { return [line.group] }
            if let line = child.value as? IncludedRegistryLine { return line.registry.groups }
            return []
        }
    }

    /// The group serving `name`.
    public func group(for name: String) -> (any MethodOptions)? {
        groups.first { type(of: $0).methods.contains { $0.name == name } }
    }

    /// Every group's type, in line order, without parsing.
    public static var groupTypes: [any MethodOptions.Type] {
        Mirror(reflecting: Self()).children.flatMap { child -> [any MethodOptions.Type] in
            if let line = child.value as? MethodGroupLine { return [line.groupType] }
            if let line = child.value as? IncludedRegistryLine { return line.registryType.groupTypes }
            return []
        }
    }

    /// Every registered method, in line order.
    public static var methods: [any PruningMethod.Type] { groupTypes.flatMap { $0.methods } }
}

/// A registry line holding a method's option group.
private protocol MethodGroupLine {
    var group: any MethodOptions { get }
    var groupType: any MethodOptions.Type { get }
}

/// A registry line holding another registry.
private protocol IncludedRegistryLine {
    var registry: any MethodRegistry { get }
    var registryType: any MethodRegistry.Type { get }
}

extension OptionGroup: MethodGroupLine where Value: MethodOptions {
    fileprivate var group: any MethodOptions { wrappedValue }
    fileprivate var groupType: any MethodOptions.Type { Value.self }
}

extension OptionGroup: IncludedRegistryLine where Value: MethodRegistry {
    fileprivate var registry: any MethodRegistry { wrappedValue }
    fileprivate var registryType: any MethodRegistry.Type { Value.self }
}
