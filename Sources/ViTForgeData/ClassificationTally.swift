/// Counts of correct predictions, overall and per true class, for accuracy reports.
public struct ClassificationTally: Sendable {
    /// [classes]: images seen and images predicted correctly, by true label.
    public private(set) var seen: [Int]
    public private(set) var correct: [Int]

    public init(classes: Int) {
        seen = Array(repeating: 0, count: classes)
        correct = Array(repeating: 0, count: classes)
    }

    public var classes: Int { seen.count }
    public var images: Int { seen.reduce(0, +) }
    public var correctImages: Int { correct.reduce(0, +) }
    /// Fraction correct over every image recorded (0 when none).
    public var accuracy: Double { images == 0 ? 0 : Double(correctImages) / Double(images) }

    /// Accuracy of class `label`, nil when no image of it was recorded.
    public func accuracy(ofClass label: Int) -> Double? {
        guard seen.indices.contains(label), seen[label] > 0 else { return nil }
        return Double(correct[label]) / Double(seen[label])
    }

    /// Records one image: its true label and the predicted class. A label past `classes` (data with more classes
    /// than the model has outputs) widens the tally instead of trapping; such an image can only be counted wrong by
    /// a model that never predicts its class, and the commands refuse that mismatch before any work anyway.
    public mutating func record(label: Int, prediction: Int) {
        if label >= seen.count {
            seen += Array(repeating: 0, count: label + 1 - seen.count)
            correct += Array(repeating: 0, count: label + 1 - correct.count)
        }
        seen[label] += 1
        if prediction == label { correct[label] += 1 }
    }

    /// Records a batch from its logits [labels.count, classes] (the prediction is the first largest logit,
    /// as `torch.argmax` picks).
    public mutating func record(labels: some Collection<Int>, logits: UnsafeBufferPointer<Float>, logitsPerImage: Int) {
        for (row, label) in labels.enumerated() {
            var best = 0
            var bestValue = -Float.infinity
            for column in 0..<logitsPerImage {
                let value = logits[row * logitsPerImage + column]
                if value > bestValue || (column == 0) { best = column; bestValue = value }
            }
            record(label: label, prediction: best)
        }
    }
}
