import Foundation
import ViTForgeDevice

// OpenCL kernel timings at DeiT-Tiny batch-64 shapes on the first OpenCL device, median of 5 after one warm-up
// (moved from the test suite, where it could only print): `swift run -c release --package-path Benchmarks
// kernel-timings`. op-bench times the row operations at more shapes; this is the quick one-device overview.
guard let device = try OpenCLRuntime.devices().first else {
    print("no OpenCL device")
    exit(1)
}
let backend = try OpenCLBackend(device: device)
func time(_ label: String, _ body: () throws -> Void) throws {
    try body()
    try backend.synchronize()
    var samples: [Double] = []
    for _ in 0 ..< 5 {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        try backend.synchronize()
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
    samples.sort()
    print("timing \(label): median \(String(format: "%.2f", samples[2])) ms")
}
let tokens = 12608, width = 192, hidden = 768, attentionRows = 37824, sequence = 197
let x = try backend.makeBuffer((0 ..< tokens * hidden).map { Float($0 % 97) * 0.05 - 2.4 })
let out = try backend.allocate(tokens * hidden)
let bias = try backend.zeros(hidden)
try time("biasGeluForward 12608x768") { try backend.biasGeluForward(x: x, bias: bias, out: out, rows: tokens, cols: hidden) }
try time("biasGeluBackward 12608x768") {
    try backend.biasGeluBackward(dOut: x, x: x, bias: bias, dX: out, rows: tokens, cols: hidden)
}
try time("addBias 12608x768") { try backend.addBias(out, bias: bias, rows: tokens, cols: hidden) }
try time("addBiasBackward 12608x768") { try backend.addBiasBackward(dOut: x, dBias: bias, rows: tokens, cols: hidden) }
try time("softmaxForward 37824x197") {
    try backend.softmaxForward(x: x, out: out, rows: attentionRows, cols: sequence, scale: 0.125)
}
try time("softmaxBackward 37824x197") {
    try backend.softmaxBackward(dOut: x, out: out, dX: out, rows: attentionRows, cols: sequence, scale: 0.125)
}
let gamma = try backend.zeros(width), mean = try backend.allocate(tokens), rstd = try backend.allocate(tokens)
try time("layerNormForward 12608x192") {
    try backend.layerNormForward(x: x, gamma: gamma, beta: gamma, out: out, mean: mean, rstd: rstd,
                                 rows: tokens, cols: width, eps: 1e-6)
}
try time("layerNormBackward 12608x192") {
    try backend.layerNormBackward(dOut: x, x: x, gamma: gamma, mean: mean, rstd: rstd, dX: out,
                                  dGamma: bias, dBeta: bias, rows: tokens, cols: width)
}
let count = 5_717_000  // DeiT-Tiny parameters
let param = try backend.zeros(count), m = try backend.zeros(count), v = try backend.zeros(count)
try time("adamwStep 5.7M") {
    try backend.adamwStep(param: param, grad: x, m: m, v: v, mask: nil, count: count,
                          hyper: AdamWHyperparameters(learningRate: 1e-3, step: 1))
}
try time("sumOfSquares 5.7M") { _ = try backend.sumOfSquares(x, count: count) }
try time("gemm fc1 12608x192->768") {
    try backend.gemm(GemmSpec(m: tokens, n: hidden, k: width), a: x, b: x, c: out)
}
