import ViTForgeFormats
import ViTForgeModel

/// The NaN/Inf guard's search: which tensor first holds a value that is not finite.
enum NonFiniteCheck {
    /// The first tensor (in the order given) with a NaN or ±Inf element, and that value; nil when all are finite.
    static func firstNonFinite(_ tensors: [NamedTensor]) -> (name: String, value: Float)? {
        for tensor in tensors {
            guard case let .float32(values) = tensor.values else { continue }
            if let bad = values.first(where: { !$0.isFinite }) { return (tensor.name, bad) }
        }
        return nil
    }
}
