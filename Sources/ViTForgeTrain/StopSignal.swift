#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Ctrl-C for long runs: the first SIGINT only raises a flag that `Trainer.run()` checks between steps, so the run
/// writes its checkpoint and returns; the handler is installed with `SA_RESETHAND`, so a second Ctrl-C kills the
/// process at once, as users expect when a checkpoint write hangs.
public enum StopSignal {
    /// Lock-free, so the signal handler may store into it (the only thing it does).
    private static let flag = Atomic<Bool>(false)

    public static var isRequested: Bool { flag.load(ordering: .relaxed) }

    /// Raises the flag as SIGINT would (tests, other front ends).
    public static func request() { flag.store(true, ordering: .relaxed) }

    public static func reset() { flag.store(false, ordering: .relaxed) }

    /// Installs the SIGINT handler; the CLI calls this once before training.
    public static func installInterruptHandler() {
        // Touch the flag here: a static's first access runs a once-initialiser, which must not happen in a handler.
        reset()
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in StopSignal.flag.store(true, ordering: .relaxed) }
        // SA_RESETHAND is 0x80000000: the sign bit of the C int field, not a value Int32(_:) accepts.
        action.sa_flags = Int32(truncatingIfNeeded: SA_RESETHAND)
        sigemptyset(&action.sa_mask)
        sigaction(SIGINT, &action, nil)
    }
}
