import ArgumentParser
import Foundation

/// How the command line reaches the commands, and how a flag error leaves: as one line.
extension VitForge {
    /// `--flag -0.2` joined into `--flag=-0.2`: swift-argument-parser reads a value that starts with `-` as the next
    /// flag ("Missing value for '--target-macs'"), so a negative number would never reach the range check that names
    /// what is wrong with it. No flag of vitforge is a dash followed by a digit, so nothing else can be meant.
    static func joiningNegativeValues(_ arguments: [String]) -> [String] {
        var joined: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            let next = index + 1 < arguments.endIndex ? arguments[index + 1] : nil
            if argument.hasPrefix("--"), !argument.contains("="), argument != "--", let next, isNegativeNumber(next) {
                joined.append(argument + "=" + next)
                index += 2
            } else {
                joined.append(argument)
                index += 1
            }
        }
        return joined
    }

    static func isNegativeNumber(_ text: String) -> Bool {
        guard text.hasPrefix("-"), text.count > 1 else { return false }
        let rest = text.dropFirst()
        guard let first = rest.first, first.isNumber || first == "." else { return false }
        return Double(rest) != nil
    }

    /// Ends the process for `error`: help and version as swift-argument-parser prints them; a flag error as one
    /// `error: …` line (no usage block, which buries the line that says what is wrong); a command's own failure
    /// (already reported by `reportingErrors`) with its status alone.
    static func exitReporting(_ error: Error) -> Never {
        let status = exitCode(for: error)
        if status == .success || error is ExitCode { exit(withError: error) }
        let lines = message(for: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        var line = lines.joined(separator: "; ")
        if line.hasPrefix("Error: ") { line.removeFirst("Error: ".count) }
        fputs("error: \(line)\n", stderr)
        Foundation.exit(status.rawValue)
    }
}

extension VitForge {
    /// The single-process entry: what the plain build runs, and what an MPI build runs when no MPI launcher started
    /// it (`MPIMain.swift`).
    static func plainMain() {
        do {
            var command = try parseAsRoot(joiningNegativeValues(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            exitReporting(error)
        }
    }
}

#if !MPI
extension VitForge {
    static func main() { plainMain() }
}
#endif
