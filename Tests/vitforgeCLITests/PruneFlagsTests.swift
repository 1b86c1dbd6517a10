import Foundation
import Testing
import ViTForgePrune
import ViTForgeTestBasics

/// The shared flags of `vitforge prune` and every method's option group: one meaning per flag, no flag twice.
struct PruneFlagsTests {
    /// The option names of a help text: the first column of lines indented by exactly two spaces.
    static func flags(inHelp help: String) -> [String] {
        help.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("  -"), !line.hasPrefix("   ") else { return nil }
            // "  -h, --help", "  --keep-mlp <keep-mlp>", "  --[no-]flag": the long names before the description.
            return line.split(separator: " ").map(String.init).filter { $0.hasPrefix("--") }
                .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ",")) }.first
        }
    }

    @Test("prune --help for every registered method: every method listed, no flag name twice",
          arguments: PruningMethods.names)
    func noDuplicateFlags(method: String) throws {
        // swift-argument-parser checks duplicate names only in debug builds; a duplicate shows twice in the help.
        let result = try vitforge(["prune", "--method", method, "--help"])
        #expect(result.status == 0, "\(result.stderr)")
        let flags = Self.flags(inHelp: result.stdout)
        #expect(flags.count > 20, "parsed only \(flags) from the help")
        let duplicates = Dictionary(grouping: flags, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        #expect(duplicates.isEmpty, "flags listed twice: \(duplicates)")
        for shared in ["--epochs", "--finetune-epochs", "--distill", "--classes", "--target-latency", "--latency-batch"] {
            #expect(flags.contains(shared), "\(shared) missing from prune --help")
        }
        #expect(result.stdout.contains(method), "--method's help does not list \(method)")
    }

    @Test("every registered method has an option group and passes validation to the model's loading",
          arguments: PruningMethods.names)
    func everyMethodDispatches(method: String) throws {
        // A method with its own training phase needs one (--epochs) to get past validation.
        let phase = try #require(PruningMethods.named(method)).hasTrainingPhase ? ["--epochs", "1"] : []
        // A target every method serves (CPD prunes toward a target only).
        // --out in a folder that exists: a missing one is refused before the model is read.
        let result = try vitforge(["prune", "--method", method, "--model", "/nonexistent/m.safetensors",
                                   "--out", "/tmp/vitforge-never-\(method).safetensors", "--device", "cpu",
                                   "--target-macs", "0.5"] + phase)
        #expect(result.status != 0)
        #expect(result.stderr.contains("/nonexistent/m.safetensors"), "\(result.stderr)")
        #expect(!result.stderr.contains("option group") && !result.stderr.contains("unknown"), "\(result.stderr)")
    }

    @Test("shared flags: unknown method, --epochs without a training phase, two targets, lone --distill: one-line errors")
    func sharedFlagErrors() throws {
        let model = fixture("fm-vit-c.safetensors")
        let cases: [([String], String)] = [
            (["--method", "nope"], "unknown"),
            (["--method", "vbp", "--epochs", "2"], "no training phase"),
            (["--target-macs", "0.5", "--target-latency", "3"], "one of"),
            (["--distill"], "--distill needs"),
            (["--method", "vbp", "--keep-residual", "0.5"], "MLP neurons and whole heads only"),
            // Found before any pass over the data: MLP neurons are 61% of fm-vit-c's MACs.
            (["--method", "vbp", "--target-macs", "0.25"], "out of reach by pruning mlpHidden alone"),
        ]
        for (arguments, message) in cases {
            let result = try vitforge(["prune", "--model", model, "--heads", "2", "--out", "/tmp/never.safetensors"]
                                      + arguments)
            #expect(result.status != 0 && result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: "/tmp/never.safetensors"))
        }
    }
}
