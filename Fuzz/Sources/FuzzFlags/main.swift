import FuzzDriver
@testable import VitforgeCLI

// One input = one command line: NUL-separated arguments after `vitforge`. Parsed and validated exactly as the
// binary does, never run, so an iteration touches no file. What it exercises is the flags' own parsing: numbers
// (Int, Double, UInt64 seeds), the list flags (--classes, --latency-batches), budgets, methods and device specs.
// ArgumentParser's errors are expected; a crash (an overflow trap, a precondition) is a finding.
runFuzzer { start, count in
    let arguments = fuzzBytes(start, count).split(separator: 0, omittingEmptySubsequences: false).map {
        String(decoding: $0, as: UTF8.self)
    }
    guard let command = try? VitForge.parseAsRoot(arguments) else { return 0 }
    // What a command parses only when it runs.
    if let train = command as? TrainCommand { _ = try? parseClassList(train.classes) }
    if let prune = command as? PruneCommand { _ = try? prune.common.deviceRequest() }
    if let eval = command as? EvalCommand {
        _ = try? parseClassList(eval.classes)
        _ = try? eval.common.deviceRequest()
    }
    return 0
}
