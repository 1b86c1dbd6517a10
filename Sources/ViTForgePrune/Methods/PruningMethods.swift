/// Every registered method, in `--method`'s order: the methods of the option groups `MethodOptionGroups` lists.
public enum PruningMethods {
    public static let all: [any PruningMethod.Type] = MethodOptionGroups.methods

    public static var names: [String] { all.map { $0.name } }

    public static func named(_ name: String) -> (any PruningMethod.Type)? { all.first { $0.name == name } }

    /// The methods that read `setting` (or, `reading: false`, that do not), with their notes, for `prune --help`:
    /// `cpd (the epoch, default 0.05), vulcan (the cut, default 0.1)`.
    public static func list(reading setting: SharedSetting, _ reading: Bool = true) -> String {
        all.filter { $0.sharedSettings.contains(setting) == reading }
            .map { method in method.name + (method.settingNotes[setting].map { " (\($0))" } ?? "") }
            .joined(separator: ", ")
    }

    /// The budget flags of the methods whose default budget is a setting of their own, for `prune --help`:
    /// `vulcan's --prune-ratio`.
    public static var ownBudgetFlags: String {
        all.compactMap { method in
            guard case let .methodSetting(flag, _, _) = method.defaultBudget else { return nil }
            return "\(method.name)'s \(flag)"
        }.joined(separator: ", ")
    }
}
