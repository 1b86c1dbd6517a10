import Foundation
import Kernels
import Testing

/// The kernel files are named in two places that Swift cannot derive from each other: `Package.swift` embeds each
/// `.cl` file (`.embedInCode`, which generates `PackageResources.<name>_cl`), and `KernelSources.files` lists those
/// generated constants in the order the program concatenates them. This test is what keeps the two lists, and the
/// folder itself, the same list: a file added to one place only fails here with the names that differ.
@Suite struct KernelListTests {
    /// The package root, from this file's path (Tests/ViTForgeDeviceTests/KernelListTests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("Package.swift, KernelSources.files and the Kernels folder list the same .cl files in the same order")
    func oneListOfKernelFiles() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let embedded = manifest.components(separatedBy: ".embedInCode(\"").dropFirst()
            .compactMap { $0.components(separatedBy: "\"").first }
        let listed = KernelSources.files.map(\.name)
        let folder = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Kernels").path)
            .filter { $0.hasSuffix(".cl") }.sorted()
        #expect(!listed.isEmpty)
        #expect(Array(embedded) == listed, "Package.swift embeds \(embedded), KernelSources.files lists \(listed)")
        #expect(folder == listed.sorted(), "Kernels/ holds \(folder), KernelSources.files lists \(listed)")
    }
}
