import ArgumentParser
import ViTForgeData

/// How an ImageFolder is read: which files may be skipped, whether decoded images stay in memory, how many threads
/// decode. IDX data (Fashion-MNIST) is always held in memory and ignores these.
struct DataLoadingOptions: ParsableArguments {
    @Flag(help: "Stop at the first image file that does not decode (default: skip it with a warning; the run ends with a count of what was skipped).")
    var strictData = false

    @Flag(help: ArgumentHelp(
        "Keep an ImageFolder's decoded images in memory instead of decoding them for every batch.",
        discussion: "Used only when the decoded images (sizes read from the file headers; training JPEGs at their "
            + "DCT-reduced size, evaluation images at full size) fit in a quarter of this machine's memory; "
            + "otherwise a note says so and the images are streamed from the files as without the flag."))
    var cacheImages = false

    @Option(help: "Threads decoding and preparing training batches ahead of the step (default: one per core, at most 4).")
    var loaderThreads = BatchLoader.defaultWorkers

    func validate() throws {
        if loaderThreads < 1 { throw ValidationError("--loader-threads must be at least 1") }
    }

    /// `options` with these choices applied.
    func applied(to options: DatasetOptions) -> DatasetOptions {
        var options = options
        options.onCorrupt = strictData ? .fail : .skip
        options.cacheImages = cacheImages
        return options
    }
}
