/// The OpenCL C sources in this folder, embedded at build time, in the order they are concatenated into one program.
/// A new file goes here and into `Package.swift`'s `.embedInCode` list (which generates its `PackageResources`
/// constant); `KernelListTests` fails, naming the difference, while the two lists or the folder disagree.
public enum KernelSources {
    public static let files: [(name: String, source: String)] = [
        ("tensor.cl", String(decoding: PackageResources.tensor_cl, as: UTF8.self)),
        ("layernorm.cl", String(decoding: PackageResources.layernorm_cl, as: UTF8.self)),
        ("softmax.cl", String(decoding: PackageResources.softmax_cl, as: UTF8.self)),
        ("mlp.cl", String(decoding: PackageResources.mlp_cl, as: UTF8.self)),
        ("loss.cl", String(decoding: PackageResources.loss_cl, as: UTF8.self)),
        ("statistics.cl", String(decoding: PackageResources.statistics_cl, as: UTF8.self)),
        ("optimizer.cl", String(decoding: PackageResources.optimizer_cl, as: UTF8.self)),
        ("svd.cl", String(decoding: PackageResources.svd_cl, as: UTF8.self)),
        ("masks.cl", String(decoding: PackageResources.masks_cl, as: UTF8.self)),
        ("eigen.cl", String(decoding: PackageResources.eigen_cl, as: UTF8.self)),
        ("attention.cl", String(decoding: PackageResources.attention_cl, as: UTF8.self)),
        ("bookkeeping.cl", String(decoding: PackageResources.bookkeeping_cl, as: UTF8.self)),
    ]
}
