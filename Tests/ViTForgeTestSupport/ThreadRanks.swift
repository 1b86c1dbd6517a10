import Foundation
import ViTForgeTrain

/// A data-parallel "world" of threads in one process, for testing what runs under `mpirun` without MPI: each rank is
/// a `Collective` whose sums meet in a shared exchange. Sums are taken in float64 in rank order (deterministic),
/// then rounded to the buffer's type, as an all-reduce of a few ranks does.
public final class ThreadRanks: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var contributions: [[Double]]
    private var result: [Double] = []

    public init(size: Int) {
        self.size = size
        contributions = Array(repeating: [], count: size)
    }

    /// The collective of rank `rank`.
    public func rank(_ rank: Int) -> any Collective { Rank(group: self, rank: rank) }

    /// Runs `body(rank)` on `size` threads at once and returns their results in rank order (rethrowing the first
    /// error).
    public func run<T>(_ body: @escaping @Sendable (any Collective) throws -> T) throws -> [T] {
        let results = UnsafeMutableBufferPointer<Result<T, Error>?>.allocate(capacity: size)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        let group = DispatchGroup()
        let resultsAddress = UnsafeSendable(results)
        for r in 0..<size {
            let collective = rank(r)
            group.enter()
            // Threads, not a dispatch queue: the ranks block on each other, which a bounded pool could deadlock.
            Thread.detachNewThread {
                resultsAddress.value[r] = Result { try body(collective) }
                group.leave()
            }
        }
        group.wait()
        return try results.map { try $0!.get() }
    }

    /// Blocks until every rank has contributed; returns the element-wise sum.
    fileprivate func sum(rank: Int, _ values: [Double]) -> [Double] {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        contributions[rank] = values
        arrived += 1
        if arrived == size {
            var total = [Double](repeating: 0, count: values.count)
            for contribution in contributions {
                precondition(contribution.count == total.count, "ranks exchanged buffers of different sizes")
                for i in total.indices { total[i] += contribution[i] }
            }
            result = total
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            // Nobody can start the next exchange before this rank has read this one's result.
            while generation == mine { condition.wait() }
        }
        return result
    }

    private final class Rank: Collective {
        let group: ThreadRanks
        let rank: Int
        var size: Int { group.size }

        init(group: ThreadRanks, rank: Int) {
            self.group = group
            self.rank = rank
        }

        func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
            let total = group.sum(rank: rank, values.map { Double($0) })
            for i in values.indices { values[i] = Float(total[i]) }
        }

        func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
            let total = group.sum(rank: rank, Array(values))
            for i in values.indices { values[i] = total[i] }
        }

        func broadcast(_ values: UnsafeMutableBufferPointer<Float>, from root: Int) throws {
            let total = group.sum(rank: rank, rank == root ? values.map { Double($0) }
                                                           : [Double](repeating: 0, count: values.count))
            for i in values.indices { values[i] = Float(total[i]) }
        }
    }
}

private struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
