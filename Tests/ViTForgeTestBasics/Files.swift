import Foundation

/// The repository root, from this file's place in `Tests/ViTForgeTestBasics/`.
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// `Tests/Fixtures`.
public let fixturesFolder = packageRoot.appendingPathComponent("Tests/Fixtures")

/// A file in `Tests/Fixtures`.
public func fixture(_ name: String) -> String {
    fixturesFolder.appendingPathComponent(name).path
}

/// The `.json` facts file next to a fixture model.
public func facts(_ model: String) throws -> [String: Any] {
    let data = try Data(contentsOf: fixturesFolder.appendingPathComponent(model + ".json"))
    return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
}

/// A fresh folder under the system's temporary directory; removed by `remove()`.
public struct TemporaryFolder {
    public let url: URL

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    public func contents() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
    }

    /// Writes `bytes` to the file `name` in the folder; returns its path.
    public func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = self.path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }
}
