import Testing
import ViTForgeData

/// A label past the model's outputs (data with more classes than the head) is counted, never a trap.
struct ClassificationTallyTests {
    @Test("labels at and past `classes` widen the tally; such images are wrong unless predicted as their class")
    func labelPastClasses() {
        var tally = ClassificationTally(classes: 3)
        tally.record(label: 1, prediction: 1)
        tally.record(label: 5, prediction: 2)
        tally.record(label: 3, prediction: 3)
        #expect(tally.classes == 6)
        #expect(tally.seen == [0, 1, 0, 1, 0, 1])
        #expect(tally.correct == [0, 1, 0, 1, 0, 0])
        #expect(tally.accuracy(ofClass: 5) == 0)
        #expect(tally.images == 3 && tally.correctImages == 2)
    }
}
