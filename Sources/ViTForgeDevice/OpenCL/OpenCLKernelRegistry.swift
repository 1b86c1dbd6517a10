import COpenCL
import Kernels
#if canImport(Glibc)
import Glibc
#endif

/// The kernels an `OpenCLBackend` creates from its program, and where their OpenCL C sources come from.
extension OpenCLBackend {
    enum KernelName: String, CaseIterable {
        case addBias = "add_bias", add, axpy, scale
        case scaleMatrices = "scale_matrices", gather, scatterAdd = "scatter_add"
        case layerNormForward = "layernorm_forward", layerNormBackwardInput = "layernorm_backward_input"
        case maskedLayerNormForward = "masked_layernorm_forward"
        case residualLayerNormForward = "residual_layernorm_forward"
        case maskedLayerNormBackwardInput = "masked_layernorm_backward_input"
        case softmaxForward = "softmax_forward", softmaxBackward = "softmax_backward"
        case biasGeluForward = "bias_gelu_forward", biasGeluBackward = "bias_gelu_backward"
        case crossEntropyForward = "cross_entropy_forward", crossEntropyBackward = "cross_entropy_backward"
        case distillationForward = "distillation_forward", distillationBackward = "distillation_backward"
        // The GPU shapes of the row operations: one work-group per row (`launchRows`).
        case layerNormForwardWG = "layernorm_forward_wg", layerNormBackwardInputWG = "layernorm_backward_input_wg"
        case maskedLayerNormForwardWG = "masked_layernorm_forward_wg"
        case residualLayerNormForwardWG = "residual_layernorm_forward_wg"
        case maskedLayerNormBackwardInputWG = "masked_layernorm_backward_input_wg"
        case softmaxForwardWG = "softmax_forward_wg", softmaxBackwardWG = "softmax_backward_wg"
        case crossEntropyForwardWG = "cross_entropy_forward_wg", distillationForwardWG = "distillation_forward_wg"
        // Two-stage column reductions (`withColumnPartials`).
        case columnSumPartials = "column_sum_partials", layerNormParamsPartials = "layernorm_params_partials"
        case columnPartialsCombine = "column_partials_combine"
        case columnStatisticsPartials = "column_statistics_partials"
        case columnStatisticsCombine = "column_statistics_combine"
        case sumPartials = "sum_partials"
        case adamwStep = "adamw_step", matVec = "mat_vec", matVecTransposed = "mat_vec_transposed"
        case scaleColumns = "scale_columns", maskGradientPartials = "mask_gradient_partials"
        case scaleRows = "scale_rows"
        case maskGradientRows = "mask_gradient_rows", segmentSum = "segment_sum"
        case addScaledSign = "add_scaled_sign", symmetricEigen = "symmetric_eigen"
        case attentionForwardRows = "attention_forward_rows", attentionForwardTiled = "attention_forward_tiled"
        case attentionBackwardDQRows = "attention_backward_dq_rows"
        case attentionBackwardDKVRows = "attention_backward_dkv_rows"
        case attentionBackwardDQTiled = "attention_backward_dq_tiled"
        case attentionBackwardDKVTiled = "attention_backward_dkv_tiled"
        case accumulatePartials = "accumulate_partials", clipScale = "clip_scale"

        /// The tiled attention kernels, whose work-group size is their tiles' (`OpenCLAttentionTiles.groupSize`).
        var isAttentionTiled: Bool {
            [.attentionForwardTiled, .attentionBackwardDQTiled, .attentionBackwardDKVTiled].contains(self)
        }

        /// Compiled only where the device has cl_khr_fp64 (statistics.cl, bookkeeping.cl).
        var needsFloat64: Bool {
            switch self {
            case .columnStatisticsPartials, .columnStatisticsCombine, .sumPartials, .accumulatePartials, .clipScale:
                return true
            default: return false
            }
        }
    }

    /// One `cl_kernel` per `KernelName` from the built program; the float64 kernels only where the device has
    /// cl_khr_fp64.
    static func createKernels(_ program: cl_program, device: OpenCLDeviceInfo) throws -> [KernelName: cl_kernel] {
        var kernels: [KernelName: cl_kernel] = [:]
        do {
            for kernel in KernelName.allCases where device.capabilities.supports(.float64) || !kernel.needsFloat64 {
                var status: cl_int = CL_SUCCESS
                guard let created = clCreateKernel(program, kernel.rawValue, &status), status == CL_SUCCESS else {
                    throw BackendError.openCL(call: "clCreateKernel(\(kernel.rawValue))", code: status)
                }
                kernels[kernel] = created
            }
        } catch {
            for created in kernels.values { clReleaseKernel(created) }
            throw error
        }
        return kernels
    }

    /// The `.cl` files of `$VITFORGE_KERNEL_DIR`: the embedded files' names in their order first, then any others
    /// alphabetically. nil when the variable is unset.
    static func kernelDirectorySources() throws -> [(name: String, source: String)]? {
        guard let value = getenv("VITFORGE_KERNEL_DIR"), value.pointee != 0 else { return nil }
        let directory = String(cString: value)
        guard let handle = opendir(directory) else {
            throw BackendError.invalidArgument("VITFORGE_KERNEL_DIR=\(directory): cannot open the folder")
        }
        var names: [String] = []
        while let entry = readdir(handle) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if entryName.hasSuffix(".cl") { names.append(entryName) }
        }
        closedir(handle)
        let order = KernelSources.files.map(\.name)
        names.sort { left, right in
            switch (order.firstIndex(of: left), order.firstIndex(of: right)) {
            case let (l?, r?): return l < r
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil): return left < right
            }
        }
        if names.isEmpty {
            throw BackendError.invalidArgument("VITFORGE_KERNEL_DIR=\(directory): no .cl files there")
        }
        return try names.map { (name: $0, source: try readTextFile(directory + "/" + $0)) }
    }

    static func readTextFile(_ path: String) throws -> String {
        guard let file = fopen(path, "rb") else { throw BackendError.invalidArgument("cannot read \(path)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = fread(&chunk, 1, chunk.count, file)
            if got == 0 { break }
            bytes += chunk[0 ..< got]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
