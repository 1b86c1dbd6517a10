import Testing
import ViTForgeDevice
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics
import ViTForgeTestSupport

/// The fused attention (the default path) against the unfused one it replaced, on whole models: the irregular
/// reference configuration (per-head widths, q/k ≠ v, a block without heads, distillation token) and the
/// fm-vit-b fixture (50 tokens, not a multiple of the 16-row tiles); logits and every parameter's gradient, on the
/// CPU and on every OpenCL kernel shape (PoCL runs the GPU-shaped tiled kernels here too).
struct FusedAttentionTests {
    static let backends: [ModelBackend] = {
        var list = ModelTestBackends.all
        if let openCL = list.lazy.compactMap({ $0.backend as? OpenCLBackend }).first {
            if let forced = try? OpenCLBackend(device: openCL.device, kernelShape: openCL.kernelShape.other) {
                list.append(ModelBackend(backend: forced))
            }
        }
        return list
    }()

    enum Model: String, CaseIterable, Sendable {
        case irregular, fixture
    }

    @Test("fused and unfused attention give the same logits and gradients", arguments: Model.allCases, backends)
    func fusedEqualsUnfused(model: Model, device: ModelBackend) throws {
        let backend = device.backend
        let weights: ViTWeights
        switch model {
        case .irregular:
            weights = try ReferenceModelTests.problem(.distilled, seed: 0xA77E).weights
        case .fixture:
            weights = try ViTWeights.load(path: fixture("fm-vit-b.safetensors"), heads: 4)
        }
        let config = weights.config
        let batch = 3
        var generator = SeededGenerator(seed: 0xF05ED)
        let images = (0 ..< batch * config.inChannels * config.imageSize * config.imageSize).map { _ in
            Float(generator.uniform())
        }
        let dLogits = (0 ..< batch * config.classes).map { _ in Float(generator.uniform() - 0.5) }
        var results: [AttentionPath: (logits: [Float], gradients: [String: [Float]])] = [:]
        for path in AttentionPath.allCases {
            let vit = try VisionTransformer(weights: weights, backend: backend)
            vit.attentionPath = path
            let logits = try backend.read(vit.forward(images: backend.makeBuffer(images), batch: batch),
                                          count: batch * config.classes)
            try vit.zeroGradients()
            try vit.backward(dLogits: backend.makeBuffer(dLogits))
            var gradients: [String: [Float]] = [:]
            for spec in config.parameterSpecs() {
                gradients[spec.name] = try backend.read(vit.gradients[spec.name]!, count: spec.elementCount)
            }
            results[path] = (logits, gradients)
        }
        let fused = results[.fused]!, unfused = results[.unfused]!
        #expect(relativeError(fused.logits, unfused.logits) < 1e-5, "\(model) on \(backend.name): logits")
        for spec in config.parameterSpecs() {
            let error = relativeError(fused.gradients[spec.name]!, unfused.gradients[spec.name]!)
            #expect(error < 1e-4, "\(model) on \(backend.name): gradient of \(spec.name) differs by \(error)")
        }
    }

    /// max |a − b| / max |b| (absolute when b is all zero).
    private func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        let scale = Double(b.map { abs($0) }.max() ?? 0)
        let worst = Double(zip(a, b).map { abs($0 - $1) }.max() ?? 0)
        return scale > 0 ? worst / scale : worst
    }
}
