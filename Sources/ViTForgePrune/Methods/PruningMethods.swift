/// Every registered method, in `--method`'s order: the methods of the option groups `MethodOptionGroups` lists.
public enum PruningMethods {
    public static let all: [any PruningMethod.Type] = MethodOptionGroups.groupTypes.flatMap { $0.methods }

    public static var names: [String] { all.map { $0.name } }

    public static func named(_ name: String) -> (any PruningMethod.Type)? { all.first { $0.name == name } }
}
