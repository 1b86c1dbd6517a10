import ArgumentParser
import ViTForgePrune

/// Which methods read which of `vitforge prune`'s method flags, derived from the option groups themselves (each
/// group's properties are its flags, its `methods` the registered methods it configures), so that a new group or
/// flag joins without a list written by hand. A flag given for a method that does not read it is an error, not a
/// silently ignored setting.
enum MethodFlags {
    /// The long names of `group`'s flags, as swift-argument-parser derives them from the property names
    /// (`pruneInterval` → `--prune-interval`).
    static func longNames(of group: any ParsableArguments) -> [(property: String, flag: String)] {
        Mirror(reflecting: group).children.compactMap { child in
            guard let label = child.label, label.hasPrefix("_") else { return nil }
            let property = String(label.dropFirst())
            return (property, "--" + kebabCase(property))
        }
    }

    /// `slimAttnPenalty` → `slim-attn-penalty`.
    static func kebabCase(_ name: String) -> String {
        var result = ""
        for character in name {
            if character.isUppercase {
                if !result.isEmpty { result.append("-") }
                result += character.lowercased()
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// Every method flag with the methods that read it.
    static func readers(in groups: [any MethodOptions]) -> [(flag: String, methods: [String])] {
        groups.flatMap { group in
            longNames(of: group).map { ($0.flag, type(of: group).methods(reading: $0.property).map { $0.name }) }
        }
    }

    /// The long flags present in `arguments` (`--flag` and `--flag=value` alike).
    static func given(_ arguments: [String]) -> Set<String> {
        Set(arguments.filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=")[0]) })
    }

    /// A training setting given without the phase it sets: `--lr` without `--epochs`, `--finetune-lr` without
    /// `--finetune-epochs`, `--alpha` or `--temperature` without `--distill`.
    static func checkTrainingFlags(_ arguments: [String], epochs: Int, finetuneEpochs: Int, distill: Bool) throws {
        let given = given(arguments)
        let rules: [(flag: String, needs: String, met: Bool)] = [
            ("--lr", "--epochs ≥ 1 (the method's own training phase)", epochs > 0),
            ("--finetune-lr", "--finetune-epochs ≥ 1", finetuneEpochs > 0),
            ("--alpha", "--distill", distill), ("--temperature", "--distill", distill),
        ]
        for rule in rules where given.contains(rule.flag) && !rule.met {
            throw ValidationError("\(rule.flag) has no effect without \(rule.needs)")
        }
    }

    /// A shared setting's flag given for a method that does not read it (`--scope` for ViT-Slim), as one line
    /// naming the methods that do, found by asking every registered method (`PruningMethod.sharedSettings`).
    static func checkSharedSettings(_ arguments: [String], method: String) throws {
        let given = given(arguments)
        let flags: [(flag: String, setting: SharedSetting)] = [("--val-fraction", .validationFraction),
                                                               ("--compensate", .compensation),
                                                               ("--scope", .rankingScope),
                                                               ("--calib-images", .calibrationImages)]
        for (flag, setting) in flags where given.contains(flag) {
            guard let type = PruningMethods.named(method), !type.sharedSettings.contains(setting) else { continue }
            // The compensation (on unless --no-compensate) reads the calibration images itself.
            if setting == .calibrationImages && !given.contains("--no-compensate")
                && type.sharedSettings.contains(.compensation) { continue }
            let readers = PruningMethods.all.filter { $0.sharedSettings.contains(setting) }.map { $0.name }
            throw ValidationError("\(flag) is read only by --method \(readers.joined(separator: ", ")); "
                                  + "--method \(method) does not read it"
                                  + (setting == .compensation ? ": \(CompensationSettings.refusal)" : ""))
        }
    }

    /// The first flag in `arguments` that `method` does not read, as a one-line error naming the methods that do.
    static func check(_ arguments: [String], method: String, groups: [any MethodOptions]) throws {
        let given = given(arguments)
        for (flag, methods) in readers(in: groups) where given.contains(flag) && !methods.contains(method) {
            throw ValidationError("\(flag) is read only by --method \(methods.joined(separator: ", ")); "
                                  + "--method \(method) does not read it")
        }
    }
}
