import ViTForgeData

/// The processes of a data-parallel run (`mpirun -np N vitforge …`) as the training loop and the statistics passes
/// see them: a rank, a size, and element-wise sums across all ranks. The MPI implementation lives above this layer
/// (ViTForgeMPI, built only with the `MPI` package trait); a plain run is `SingleProcess`, where every operation
/// leaves the buffers as they are.
///
/// Every rank must call the same collective operations in the same order with the same element counts: the trainer
/// and the passes keep their control flow identical on every rank (same batches per epoch, same stop decisions)
/// to guarantee that.
public protocol Collective: AnyObject {
    /// This process's index, 0 ..< size. Rank 0 writes every file and prints.
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` on every rank by their element-wise sum over all ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// Replaces `values` on every rank by rank `root`'s.
    func broadcast(_ values: UnsafeMutableBufferPointer<Float>, from root: Int) throws
}

/// One process: the sums and broadcasts of one rank are the values themselves.
public final class SingleProcess: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {}
    public func broadcast(_ values: UnsafeMutableBufferPointer<Float>, from root: Int) throws {}
}

/// The process-wide collective, like `StopSignal` a property of the process: the CLI sets it once at start-up
/// (before any trainer or pass exists) when it runs under MPI; everything else reads it as its default.
public enum Collectives {
    nonisolated(unsafe) public static var world: any Collective = SingleProcess()
}

extension Collective {
    /// Whether this process writes files and prints (rank 0).
    public var isMain: Bool { rank == 0 }

    /// `values` summed over all ranks.
    public func sum(_ values: [Double]) throws -> [Double] {
        var copy = values
        try copy.withUnsafeMutableBufferPointer { try allReduceSum($0) }
        return copy
    }

    /// True on every rank when `flag` is true on any (a stop request seen by one rank stops all of them at the
    /// same step).
    public func any(_ flag: Bool) throws -> Bool {
        size == 1 ? flag : try sum([flag ? 1 : 0])[0] > 0
    }

    /// This rank's share of `count` items (`BatchShards`): the same split on every rank.
    public func shard(of count: Int) -> Range<Int> {
        BatchShards.range(of: count, part: rank, parts: size)
    }
}
