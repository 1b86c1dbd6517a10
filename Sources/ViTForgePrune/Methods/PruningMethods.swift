/// The registry `vitforge prune --method NAME` dispatches through. A new method adds its type here.
public enum PruningMethods {
    public static let all: [any PruningMethod.Type] = [
        VarianceBasedPruning.self, ViTSlim.self, CPD.self, Vulcan.self, MagnitudePruning.self, TaylorPruning.self,
        RandomPruning.self, OBSPruning.self,
    ]

    public static var names: [String] { all.map { $0.name } }

    public static func named(_ name: String) -> (any PruningMethod.Type)? { all.first { $0.name == name } }
}
