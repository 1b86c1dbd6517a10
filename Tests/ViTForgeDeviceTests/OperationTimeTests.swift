import Foundation
import Testing
@testable import ViTForgeDevice

/// The one record type of both profiles (`OperationTimeline` and an OpenCL queue's `takeProfile()`): totals per name
/// become records largest first, ties by name, and the bench's JSON keys stay `name`, `calls`, `ms`.
@Suite struct OperationTimeTests {
    @Test func totalsBecomeRecordsLargestFirst() throws {
        let records = OperationTime.records(["layerNormForward": (calls: 3, nanoseconds: 2_500_000),
                                             "gemm": (calls: 7, nanoseconds: 9_000_000),
                                             "add": (calls: 1, nanoseconds: 2_500_000)])
        #expect(records.map(\.name) == ["gemm", "add", "layerNormForward"])
        #expect(records.map(\.calls) == [7, 1, 3])
        #expect(records.map(\.milliseconds) == [9, 2.5, 2.5])

        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(records[0])) as? [String: Any] ?? [:]
        #expect(Set(json.keys) == ["name", "calls", "ms"])
    }
}
