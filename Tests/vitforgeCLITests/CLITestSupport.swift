import Foundation
import Testing
import ViTForgeModel
import ViTForgeTestBasics

/// The `vitforge` binary SwiftPM built for this test run: next to the test bundle (whatever the configuration),
/// else `.build/debug/vitforge`.
let vitforgeBinary: String = {
    var candidates: [URL] = []
    if let executable = Bundle.main.executableURL {
        candidates.append(executable.deletingLastPathComponent().appendingPathComponent("vitforge"))
    }
    candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("vitforge"))
    candidates.append(packageRoot.appendingPathComponent(".build/debug/vitforge"))
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }?.path
        ?? packageRoot.appendingPathComponent(".build/debug/vitforge").path
}()

struct CommandResult {
    let status: Int32
    let stdout: String
    let stderr: String

    var stderrLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: true) }
}

/// Runs `vitforge arguments…` to completion. Output goes through files, not pipes, so a long report cannot block
/// the child on a full pipe.
func vitforge(_ arguments: [String], environment extra: [String: String] = [:]) throws -> CommandResult {
    try runProcess(vitforgeBinary, arguments, environment: extra)
}

/// Runs any program (e.g. a shell that sets a limit and then runs `vitforge`) as `vitforge(_:)` does.
func runProcess(_ program: String, _ arguments: [String], environment extra: [String: String] = [:]) throws
    -> CommandResult {
    let folder = try TemporaryFolder()
    defer { folder.remove() }
    let outPath = folder.path("stdout"), errPath = folder.path("stderr")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment["POCL_CACHE_DIR"] = environment["POCL_CACHE_DIR"] ?? "/tmp/pocl-cache"
    environment.removeValue(forKey: "VITFORGE_DEVICE")
    environment.removeValue(forKey: "VITFORGE_GEMM")  // the tests' own expectations assume the default library
    environment.merge(extra) { _, new in new }
    process.environment = environment
    let outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = outHandle
    process.standardError = errHandle
    try process.run()
    process.waitUntilExit()
    try outHandle.close()
    try errHandle.close()
    return CommandResult(status: process.terminationStatus,
                         stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// Largest absolute difference.
func maxAbsoluteError(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
}

/// ‖a − b‖ / ‖b‖.
func relativeError(_ a: [Float], _ reference: [Float]) -> Double {
    guard a.count == reference.count else { return .infinity }
    var difference = 0.0, norm = 0.0
    for (x, y) in zip(a, reference) {
        difference += (Double(x) - Double(y)) * (Double(x) - Double(y))
        norm += Double(y) * Double(y)
    }
    return (difference / max(norm, 1e-30)).squareRoot()
}

/// A safetensors file with a hand-written header (for the malformed cases the writer would never produce).
func rawSafetensors(header: String, dataBytes: Int) -> [UInt8] {
    let json = Array(header.utf8)
    return withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json
        + [UInt8](repeating: 0, count: dataBytes)
}
