#if canImport(Glibc)
import Glibc
#endif
import CMPI
import ViTForgeTrain

/// The CLI's MPI life cycle: `start()` once before parsing the command (initialises MPI, makes
/// `Collectives.world` the MPI world, and silences stdout on every rank but 0 so that results print once), and
/// `finish(status:)` on the way out. The CLI calls it only when an MPI launcher started the process
/// (`launchedByMPI`); started any other way it is the plain build.
public enum MPIProcess {
    /// Whether an MPI launcher started this process: Open MPI's `mpirun` sets `OMPI_COMM_WORLD_SIZE` in every rank,
    /// PMIx-based launchers (`prterun`, Open MPI 5's `mpirun`) `PMIX_RANK`.
    public static var launchedByMPI: Bool {
        getenv("OMPI_COMM_WORLD_SIZE") != nil || getenv("PMIX_RANK") != nil
    }

    /// Initialises MPI and installs its world; returns it.
    @discardableResult
    public static func start() throws -> any Collective {
        // mpirun ends the ranks of a killed job with SIGTERM: it must end this process even when the launcher
        // handed down an ignored or blocked SIGTERM (dispositions and masks survive exec).
        signal(SIGTERM, SIG_DFL)
        var terminate = sigset_t()
        sigemptyset(&terminate)
        sigaddset(&terminate, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &terminate, nil)
        try check("MPI_Init_thread", vf_mpi_init())
        // Every exit path (ArgumentParser's exit, a thrown ExitCode) finalises, which mpirun expects of a rank
        // that ends normally.
        atexit { if vf_mpi_active() != 0 { _ = vf_mpi_finalize() } }
        let world = try MPICollective()
        Collectives.world = world
        if world.rank != 0 {
            // Progress lines already print on rank 0 only (ProgressPrinter); the results on stdout too.
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 {
                dup2(null, 1)
                close(null)
            }
        }
        return world
    }

    /// Ends the run with `status`: a failure on any rank aborts all of them (the others would otherwise wait for it
    /// forever inside the next all-reduce); success and an agreed stop (every rank stops at the same step) finalise
    /// normally through the exit handler.
    public static func finish(status: Int32) {
        if status != 0 && status != 130 && Collectives.world.size > 1 && vf_mpi_active() != 0 {
            fflush(nil)
            vf_mpi_abort(status)
        }
    }
}
