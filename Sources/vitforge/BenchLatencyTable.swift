import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgePrune
import ViTForgeTrain

extension BenchCommand {
    /// `bench --latency-table T`: the model's layer latency table on the selected device, written atomically.
    func measureLatencyTable(to path: String) throws {
        let backend = try common.makeBackend()
        let config = try ViTWeights.load(path: models[0], heads: headCounts.first).config
        let pass = PassMonitor.begin("latency table", total: runs, unit: "rounds")
        let table = try LayerLatencyMeasurement.measure(config: config, batch: batches[0], rounds: runs,
                                                        backend: backend, progress: pass)
        pass.end()
        try AtomicFile.write(try table.jsonData(), to: path, protecting: models)
        print("device: \(table.device.summary)")
        print("model: \(table.parent.summary); batch \(table.batch)")
        print("wrote \(path): \(table.linear.count) linear and \(table.attention.count) attention shapes, "
              + "\(table.rounds) alternating rounds each (\(table.widths))")
    }
}
