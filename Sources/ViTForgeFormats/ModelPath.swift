import Foundation

/// What a `--model` path names: a model file, or a Hugging Face model folder (as `huggingface-cli download` leaves
/// it: `model.safetensors` beside `config.json`), which stands for the model file inside it.
public enum ModelPath {
    /// The file a Hugging Face model folder keeps its weights in.
    public static let huggingFaceFile = "model.safetensors"

    /// `path` itself, or for a folder holding `model.safetensors`, that file.
    public static func file(_ path: String) -> String {
        guard isFolder(path) else { return path }
        let inner = (path as NSString).appendingPathComponent(huggingFaceFile)
        return FileManager.default.fileExists(atPath: inner) ? inner : path
    }

    /// The model file to read for `path`; a folder without `model.safetensors` is refused in plain words instead of
    /// the system's "could not be completed" of reading a folder as a file.
    public static func resolve(_ path: String) throws -> String {
        let file = file(path)
        if isFolder(file) {
            throw ModelFileError(file: path, .io("is a folder without \(huggingFaceFile); give a .safetensors file, "
                                                 + "or a Hugging Face model folder holding \(huggingFaceFile) and config.json"))
        }
        return file
    }

    private static func isFolder(_ path: String) -> Bool {
        var folder: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &folder) && folder.boolValue
    }
}
