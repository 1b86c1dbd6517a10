/// Accuracy on images of a class subset, two ways (Vulcan, METHODS.md §0.5): the argmax over all of a model's
/// outputs (the paper's number), and the argmax over the subset's outputs only (what a deployment that knows the
/// subset would use). Outputs map to the data set's classes through `outputClasses` (a trimmed head's class ids);
/// for a head with only the subset's outputs the two coincide.
public struct SubsetAccuracy: Sendable {
    /// The data set's class of each output.
    public let outputClasses: [Int]
    /// The outputs whose class is in the subset.
    public let subsetOutputs: [Int]
    public private(set) var images = 0
    public private(set) var correct = 0
    public private(set) var correctRestricted = 0

    public init(outputClasses: [Int], subset: [Int]) {
        self.outputClasses = outputClasses
        let members = Set(subset)
        subsetOutputs = outputClasses.indices.filter { members.contains(outputClasses[$0]) }
    }

    public var accuracy: Double { images == 0 ? 0 : Double(correct) / Double(images) }
    public var restrictedAccuracy: Double { images == 0 ? 0 : Double(correctRestricted) / Double(images) }

    /// Records images by their data-set labels and logits [labels.count, outputClasses.count] (first largest wins).
    public mutating func record(labels: some Collection<Int>, logits: UnsafeBufferPointer<Float>) {
        let outputs = outputClasses.count
        for (row, label) in labels.enumerated() {
            let base = row * outputs
            var best = 0
            for k in 1 ..< max(outputs, 1) where logits[base + k] > logits[base + best] { best = k }
            var bestRestricted = subsetOutputs.first ?? 0
            for k in subsetOutputs where logits[base + k] > logits[base + bestRestricted] { bestRestricted = k }
            images += 1
            if outputClasses[best] == label { correct += 1 }
            if outputClasses[bestRestricted] == label { correctRestricted += 1 }
        }
    }
}
