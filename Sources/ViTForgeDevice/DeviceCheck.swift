/// A quick end-to-end check of a backend: uploads two small odd-sized matrices, multiplies them on the device and
/// compares with a float64 product on the host. `vitforge devices --check` runs it on each device.
public enum DeviceCheck {
    /// Returns the largest absolute error; throws if the device fails or the error exceeds 1e-3.
    public static func run(on backend: any TensorOps) throws -> Double {
        let (m, n, k) = (13, 7, 37)
        let a = (0..<(m * k)).map { Float(($0 * 7919) % 97) / 97 - 0.5 }
        let b = (0..<(k * n)).map { Float(($0 * 104_729) % 89) / 89 - 0.5 }
        let bufferA = try backend.makeBuffer(a)
        let bufferB = try backend.makeBuffer(b)
        let bufferC = try backend.zeros(m * n)
        try backend.gemm(GemmSpec(m: m, n: n, k: k), a: bufferA, b: bufferB, c: bufferC)
        let c = try backend.read(bufferC)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var expected = 0.0
                for p in 0..<k { expected += Double(a[i * k + p]) * Double(b[p * n + j]) }
                worst = max(worst, abs(expected - Double(c[i * n + j])))
            }
        }
        guard worst < 1e-3 else {
            throw BackendError.invalidArgument("\(backend.name): GEMM check failed, max error \(worst)")
        }
        return worst
    }
}
