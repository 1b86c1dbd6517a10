import CMPI
import ViTForgeTrain

/// A failed MPI call: its name and MPI's description of the code.
public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32

    public var description: String {
        var text = [CChar](repeating: 0, count: 512)
        vf_mpi_error_string(code, &text, Int32(text.count))
        return "MPI: \(call) failed: \(String(cString: text))"
    }
}

/// `Collective` over MPI_COMM_WORLD: float32 and float64 sums with `MPI_Allreduce` (in place), broadcasts with
/// `MPI_Bcast`. Only the training thread calls it (MPI_THREAD_FUNNELED).
public final class MPICollective: Collective {
    public let rank: Int
    public let size: Int

    /// The world of an initialised MPI (`MPIProcess.start()`).
    init() throws {
        var rank: Int32 = 0, size: Int32 = 1
        try check("MPI_Comm_rank", vf_mpi_rank(&rank))
        try check("MPI_Comm_size", vf_mpi_size(&size))
        self.rank = Int(rank)
        self.size = Int(size)
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = values.baseAddress, !values.isEmpty else { return }
        try check("MPI_Allreduce", vf_mpi_allreduce_sum_float(base, values.count))
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        guard let base = values.baseAddress, !values.isEmpty else { return }
        try check("MPI_Allreduce", vf_mpi_allreduce_sum_double(base, values.count))
    }

    public func broadcast(_ values: UnsafeMutableBufferPointer<Float>, from root: Int) throws {
        guard let base = values.baseAddress, !values.isEmpty else { return }
        try check("MPI_Bcast", vf_mpi_broadcast_float(base, values.count, Int32(root)))
    }
}

func check(_ call: String, _ code: Int32) throws {
    if code != 0 { throw MPIError(call: call, code: code) }
}
