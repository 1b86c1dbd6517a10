#if canImport(Glibc)
import Glibc
#endif
import ViTForgeModel
import ViTForgePrune

/// The latency meter `--target-latency` solves with, when a test replaces the device's clock. Only a build with the
/// fault hooks (`-DVITFORGE_FAULT_INJECTION`, as `.ci/run` builds the test binary) reads
/// `VITFORGE_FAULT_LATENCY_MS_PER_GMAC=K`: one batch of a shape then takes K ms per 10⁹ MACs, a cost model, so that a
/// test checks what the solver does with latencies without timing a shared machine. Nil otherwise: the device's.
enum LatencyModel {
    static let millisecondsPerGMAC: Double? = {
        #if VITFORGE_FAULT_INJECTION
        guard let pointer = getenv("VITFORGE_FAULT_LATENCY_MS_PER_GMAC"),
              let value = Double(String(cString: pointer)), value > 0 else { return nil }
        return value
        #else
        return nil
        #endif
    }()

    static var meter: ((Int) -> LatencyMeter)? {
        guard let millisecondsPerGMAC else { return nil }
        return { batch in
            LatencyMeter(batch: batch) { config in millisecondsPerGMAC * Double(config.cost().macs * batch) / 1e9 }
        }
    }
}
