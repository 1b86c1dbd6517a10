/// Every failure the training layer reports itself (model-file and device errors pass through unchanged).
/// `description` is one line; checkpoint errors name the file.
public enum TrainingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Settings that cannot train: a non-positive learning rate, α outside [0, 1], zero epochs, …
    case invalidSettings(String)
    /// An API used out of order or with mismatched sizes (a mask of the wrong length, an unknown parameter).
    case invalidState(String)
    /// A checkpoint that cannot be read or does not fit this run (another model, other hyper-parameters).
    case checkpoint(file: String, String)
    /// The `TrainingBatches` source misbehaved (a batch larger than it declared, a label out of range).
    case batches(String)
    /// NaN or Inf in the loss, the weights or the optimizer state: the message names the step and the tensor.
    case nonFinite(String)

    public var description: String {
        let line: String
        switch self {
        case let .invalidSettings(message): line = "invalid training settings: " + message
        case let .invalidState(message): line = message
        case let .checkpoint(file, message): line = file + ": " + message
        case let .batches(message): line = "training data: " + message
        case let .nonFinite(message): line = message
        }
        return line.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    }
}
