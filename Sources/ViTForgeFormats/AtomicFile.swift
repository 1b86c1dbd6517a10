import Foundation

/// Whole-file writes for reports and configs, with the same guarantees as model files: a temporary file in the
/// destination's folder renamed over it, never over one of the command's inputs.
public enum AtomicFile {
    public static func write(_ bytes: Data, to path: String, protecting inputs: [String] = []) throws {
        for input in inputs where SafetensorsWriter.sameFile(path, input) {
            throw ModelFileError(file: path, .wouldOverwriteInput)
        }
        try SafetensorsWriter.writeAtomically(to: path) { descriptor in
            try bytes.withUnsafeBytes { try SafetensorsWriter.writeAll(descriptor, path: path, $0) }
        }
    }
}
