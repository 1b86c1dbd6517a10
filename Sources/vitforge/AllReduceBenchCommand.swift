import ArgumentParser
import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// Times the data-parallel step's gradient all-reduce (`GradientExchange`: device → host bucket copies, one
/// MPI_Allreduce per bucket, copies back) over every gradient tensor of a model shape, under
/// `mpirun -np N vitforge bench-allreduce`. Only the tensor sizes matter, so DeiT-B (not distilled) is a synthetic shape (86.6M
/// parameters) with no weights file. Hidden: a measuring tool for Benchmarks/mpi_scaling.py, not a user command.
struct AllReduceBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-allreduce", abstract: "Time the gradient all-reduce of model shapes (run under mpirun).",
        shouldDisplay: false)

    @Option(help: "Shapes: fm-vit-c, deit-tiny, deit-base (comma-separated).")
    var models = "fm-vit-c,deit-tiny,deit-base"

    @Option(help: "Untimed exchanges first.")
    var warmup = 2

    @Option(help: "Timed exchanges; the median is reported.")
    var runs = 7

    @Option(help: "Floats per all-reduce bucket.")
    var bucket = 1 << 22

    static let deitBase = ViTConfig.timm(imageSize: 224, patchSize: 16, classes: 1000, embedDim: 768, depth: 12,
                                         heads: 12)

    func run() throws {
        try reportingErrors {
            let world = Collectives.world
            let backend = CPUBackend()
            var rows: [[String: Any]] = []
            for name in models.split(separator: ",").map(String.init) {
                guard let config = name == "deit-base" ? Self.deitBase : Architectures.named(name) else {
                    throw ValidationError("--models: unknown shape \(name)")
                }
                let specs = config.parameterSpecs()
                let buffers = try specs.map { spec -> (buffer: Buffer, count: Int) in
                    (try backend.makeBuffer([Float](repeating: Float(world.rank + 1), count: spec.elementCount)),
                     spec.elementCount)
                }
                let exchange = GradientExchange(collective: world, bucketElements: bucket)
                var times: [Double] = []
                for run in 0 ..< warmup + runs {
                    // Same start on every rank, so the time is the exchange's, not waiting for a late rank.
                    _ = try world.sum([0])
                    exchange.resetTiming()
                    try exchange.allReduceSum(buffers, backend: backend)
                    if run >= warmup { times.append(exchange.seconds) }
                }
                let median = times.sorted()[times.count / 2]
                let parameters = specs.reduce(0) { $0 + $1.elementCount }
                rows.append(["model": name, "parameters": parameters, "bytes": 4 * parameters, "ranks": world.size,
                             "allreduceMsMedian": median * 1e3, "allreduceMsMin": (times.min() ?? 0) * 1e3,
                             "macsPerImage": config.cost().macs, "buckets": (parameters + bucket - 1) / bucket])
                print("\(name): \(parameters) parameters (\(Formatting.decimal1(Double(4 * parameters) / 1e6)) MB), "
                      + "\(world.size) ranks: all-reduce \(Formatting.decimal1(median * 1e3)) ms median")
            }
            let json = try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys])
            print(String(decoding: json, as: UTF8.self))
        }
    }
}
