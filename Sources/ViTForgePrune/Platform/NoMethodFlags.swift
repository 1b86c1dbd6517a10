import ArgumentParser

/// A method that has no flags of its own: everything it reads comes from `PruningContext`.
public protocol FlaglessMethod: PruningMethod {
    init()
}

/// The option group of a method without flags of its own, so that its registry line is
/// `@OptionGroup var name: NoMethodFlags<Method>` (nothing shows in `prune --help` but the method in `--method`).
public struct NoMethodFlags<Method: FlaglessMethod>: MethodOptions {
    public static var methods: [any PruningMethod.Type] { [Method.self] }
    public static var title: String { "" }

    public init() {}

    public func method(named name: String) throws -> any PruningMethod { Method() }
}
