#if MPI
import ArgumentParser
import Foundation
import ViTForgeMPI

/// With the `MPI` package trait the CLI started by an MPI launcher starts MPI before parsing, so that every command
/// runs as one rank of `mpirun -np N vitforge …`, and a failure on one rank ends all of them. Started any other way
/// it runs the plain build's entry (no MPI_Init), so that one build serves the test suite and the MPI runs.
extension VitForge {
    static func main() {
        guard MPIProcess.launchedByMPI else { return plainMain() }
        do {
            try MPIProcess.start()
        } catch {
            fputs("error: \(error)\n", stderr)
            Foundation.exit(1)
        }
        do {
            var command = try parseAsRoot(joiningNegativeValues(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            let status = exitCode(for: error).rawValue
            if status != 0 && status != 130 {
                let message = fullMessage(for: error)
                if !message.isEmpty { fputs(message + "\n", stderr) }
                MPIProcess.finish(status: status)
                Foundation.exit(status)
            }
            exit(withError: error)
        }
    }
}
#endif
