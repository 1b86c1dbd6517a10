// The ImageFolder loader alone (list, decode, resize, augment, write floats), in images/s, for a model input side and
// channel count, with 1 and 2 loader threads (the folder: Benchmarks/make_photo_folder.py).
//
//   loader-bench --data /tmp/photos --side 224 --channels 3 [--batch 32] [--batches 40] [--threads 1,2] [--full]
//   loader-bench --data /tmp/photos --whole-decode
//
// Batches are asked for in sequence, as training does, with nothing else running: the time is the loader's.
// --full decodes at full size (as evaluation does) instead of with DCT scaling. --whole-decode instead decodes the
// whole folder into memory at full size, as `ImageFolder.load` does (and as every ImageFolder run did before
// streaming), and prints the process's peak RSS.
import Foundation
import ViTForgeData

func value(_ flag: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data(("loader-bench: " + message + "\n").utf8))
    exit(1)
}

guard let data = value("--data") else { fail("give --data FOLDER") }
let side = Int(value("--side") ?? "224") ?? 224
let channels = Int(value("--channels") ?? "3") ?? 3
let batch = Int(value("--batch") ?? "32") ?? 32
let batches = Int(value("--batches") ?? "40") ?? 40
let threads = (value("--threads") ?? "1,2").split(separator: ",").compactMap { Int($0) }
let full = CommandLine.arguments.contains("--full")

if CommandLine.arguments.contains("--whole-decode") {
    do {
        let started = ContinuousClock.now
        let store = try ImageFolder.load(data, onCorrupt: .skip, warn: { print($0) })
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        print("\(data): \(store.count) images decoded whole in \(ContinuousClock.now - started): "
              + "\(store.pixels.count >> 20) MiB of pixels, peak RSS \(usage.ru_maxrss >> 10) MiB")
    } catch {
        fail("\(error)")
    }
    exit(0)
}

do {
    let listed = ContinuousClock.now
    let splits = try Dataset.load(data, options: DatasetOptions(channels: channels, side: side, reducedTrainingDecode: !full))
    let listing = ContinuousClock.now - listed
    print("\(data): \(splits.training.count) images listed in \(listing); model input \(channels)×\(side)², "
          + "batch \(batch), \(full ? "full-size decode" : "DCT-scaled decode")")
    for workers in threads {
        let loader = try BatchLoader(dataset: splits.training, batchSize: batch, seed: 1,
                                     augmentation: AugmentationRecipe(maximumShift: 2, flipProbability: 0.5),
                                     workers: workers)
        let images = UnsafeMutableBufferPointer<Float>.allocate(capacity: batch * loader.imageElements)
        let labels = UnsafeMutableBufferPointer<Int32>.allocate(capacity: batch)
        defer {
            images.deallocate()
            labels.deallocate()
        }
        // One untimed batch: the first fill prepares on the spot and starts the prefetching.
        _ = try loader.fill(epoch: 0, index: 0, images: images, labels: labels)
        let count = min(batches, loader.batchesPerEpoch - 1)
        let started = ContinuousClock.now
        var done = 0
        for index in 1...count { done += try loader.fill(epoch: 0, index: index, images: images, labels: labels) }
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        print("  \(workers) thread\(workers == 1 ? "" : "s"): \(done) images in \(String(format: "%.2f", seconds)) s = "
              + "\(String(format: "%.0f", Double(done) / seconds)) images/s")
    }
} catch {
    fail("\(error)")
}
