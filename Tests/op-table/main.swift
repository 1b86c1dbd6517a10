// The op table (`OpCase.table`, the rows `BackendOpTests` runs) as a plain executable, for machines without Swift's
// test runner: a lent GPU machine runs it from Benchmarks/gpu's pack. Every row on the chosen backend against its
// float64 reference, pass/fail per row, exit status 1 when any row fails.
//   op-table [--backend opencl|cpu] [--device opencl:P.D] [--shapes gpu,cpu] [--attention-tiles RxLxTxW ...]
//            [--only TEXT] [--json PATH] [--list]
// On OpenCL each kernel shape (`OpenCLKernelShape`) is a backend of its own; each `--attention-tiles` (repeatable)
// adds a GPU-shaped backend built with that tile shape, so a tile variant is proven correct before it is timed.
// No Foundation: the static binary stays small enough to carry.
#if canImport(Glibc)
import Glibc
#endif
import ViTForgeDevice
import ViTForgeOpTable

struct Options {
    var backend = "opencl"
    var device: String?
    var shapes: [OpenCLKernelShape] = [.gpu, .cpuDevice]
    var tiles: [OpenCLAttentionTiles] = []
    var only: String?
    var json: String?
    var list = false
}

func fail(_ message: String, status: Int32 = 1) -> Never {
    fputs("op-table: \(message)\n", stderr)
    exit(status)
}

func parseOptions(_ arguments: [String]) -> Options {
    var options = Options()
    var index = 0
    func value(_ flag: String) -> String {
        index += 1
        guard index < arguments.count else { fail("\(flag) needs a value", status: 2) }
        return arguments[index]
    }
    while index < arguments.count {
        let flag = arguments[index]
        switch flag {
        case "--backend":
            options.backend = value(flag)
            guard ["cpu", "opencl"].contains(options.backend) else {
                fail("--backend: expected cpu or opencl", status: 2)
            }
        case "--device": options.device = value(flag)
        case "--shapes":
            options.shapes = value(flag).split(separator: ",").map { text in
                guard let shape = OpenCLKernelShape(rawValue: String(text)) else {
                    fail("--shapes: expected gpu, cpu or gpu,cpu, got '\(text)'", status: 2)
                }
                return shape
            }
        case "--attention-tiles":
            let text = value(flag)
            do { options.tiles.append(try OpenCLAttentionTiles(parsing: text)) } catch {
                fail("--attention-tiles: \(error)", status: 2)
            }
        case "--only": options.only = value(flag)
        case "--json": options.json = value(flag)
        case "--list": options.list = true
        case "-h", "--help":
            print("usage: op-table [--backend opencl|cpu] [--device opencl:P.D] [--shapes gpu,cpu] "
                  + "[--attention-tiles RxLxTxW ...] [--only TEXT] [--json PATH] [--list]")
            exit(0)
        default: fail("unknown argument '\(flag)' (see --help)", status: 2)
        }
        index += 1
    }
    return options
}

/// A backend to run the rows on, with the label its lines and JSON carry.
struct Candidate {
    var label: String
    var backend: any Backend
    var shape: String?
    var tiles: String?
}

func makeCandidates(_ options: Options) -> [Candidate] {
    if options.backend == "cpu" { return [Candidate(label: "cpu", backend: CPUBackend())] }
    let devices: [OpenCLDeviceInfo]
    do { devices = try OpenCLRuntime.devices() } catch { fail("no OpenCL devices: \(error)") }
    let chosen: OpenCLDeviceInfo?
    if let spec = options.device {
        chosen = devices.first { $0.spec == spec }
        if chosen == nil { fail("--device \(spec): no such OpenCL device (found: \(devices.map(\.spec)))") }
    } else {
        chosen = DeviceSelection.explicitChoice(from: devices)
    }
    guard let device = chosen else { fail("no OpenCL device found (is an ICD installed? see `vitforge devices`)") }
    var candidates: [Candidate] = []
    for shape in options.shapes {
        // Extra tile shapes only change the GPU-shaped attention kernels.
        let tileVariants: [OpenCLAttentionTiles?] = shape == .gpu ? [nil] + options.tiles.map { $0 } : [nil]
        for tiles in tileVariants {
            do {
                let backend = try OpenCLBackend(device: device, kernelShape: shape, attentionTiles: tiles)
                let label = "\(device.spec) \(shape.rawValue)-shaped, tiles \(backend.attentionTiles)"
                candidates.append(Candidate(label: label, backend: backend, shape: shape.rawValue,
                                            tiles: backend.attentionTiles.description))
            } catch {
                fail("\(device.spec) \(device.name): cannot open with \(shape.rawValue)-shaped kernels"
                     + (tiles.map { ", tiles \($0)" } ?? "") + ": \(error)")
            }
        }
    }
    return candidates
}

/// One row's outcome on one backend.
struct Outcome {
    var backend: String
    var row: String
    var checks: [OutputCheck]
    var thrown: String?
    var passed: Bool { thrown == nil && checks.allSatisfy(\.passed) }
}

func run(_ options: Options) -> Int32 {
    let rows = OpCase.table.filter { options.only == nil || $0.name.contains(options.only!) }
    if options.list {
        for row in rows { print(row.name) }
        return 0
    }
    guard !rows.isEmpty else { fail("--only \(options.only ?? ""): no row matches", status: 2) }
    let candidates = makeCandidates(options)
    var outcomes: [Outcome] = []
    for candidate in candidates {
        print("== \(candidate.label): \(candidate.backend.name)")
        for row in rows {
            var outcome = Outcome(backend: candidate.label, row: row.name, checks: [])
            do { outcome.checks = try row.check(on: candidate.backend) } catch { outcome.thrown = "\(error)" }
            // The output nearest its tolerance.
            let worst = outcome.checks.max {
                $0.error / max($0.tolerance, 1e-300) < $1.error / max($1.tolerance, 1e-300)
            }
            var line = (outcome.passed ? "PASS  " : "FAIL  ") + row.name
            if let thrown = outcome.thrown {
                line += "  threw: \(thrown)"
            } else if let worst {
                line += "  (worst: \(worst.output), error \(worst.error), tolerance \(worst.tolerance))"
            }
            for check in outcome.checks where !check.passed {
                line += "\n      \(check.output): error \(check.error) > \(check.tolerance) "
                    + "at index \(check.worstIndex), got \(check.got), expected \(check.expected); seed \(row.seed)"
            }
            print(line)
            outcomes.append(outcome)
        }
    }
    let failed = outcomes.filter { !$0.passed }.count
    print("op-table: \(rows.count) rows × \(candidates.count) backends: \(outcomes.count - failed) passed, "
          + "\(failed) failed")
    if let path = options.json {
        do { try writeJSON(path: path, candidates: candidates, outcomes: outcomes) } catch { fail("\(path): \(error)") }
    }
    return failed == 0 ? 0 : 1
}

// MARK: JSON (by hand: no Foundation)

func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// JSON has no NaN or infinity: those become null.
func jsonNumber(_ value: Double) -> String { value.isFinite ? "\(value)" : "null" }

func writeJSON(path: String, candidates: [Candidate], outcomes: [Outcome]) throws {
    var text = "{\n  \"backends\": [\n"
    text += candidates.map { candidate in
        "    {\"label\": \(jsonString(candidate.label)), \"name\": \(jsonString(candidate.backend.name))"
            + (candidate.shape.map { ", \"kernel_shape\": \(jsonString($0))" } ?? "")
            + (candidate.tiles.map { ", \"attention_tiles\": \(jsonString($0))" } ?? "") + "}"
    }.joined(separator: ",\n")
    text += "\n  ],\n  \"rows\": [\n"
    text += outcomes.map { outcome in
        var line = "    {\"backend\": \(jsonString(outcome.backend)), \"row\": \(jsonString(outcome.row)), "
            + "\"passed\": \(outcome.passed)"
        if let thrown = outcome.thrown { line += ", \"threw\": \(jsonString(thrown))" }
        line += ", \"outputs\": [" + outcome.checks.map { check in
            "{\"name\": \(jsonString(check.output)), \"error\": \(jsonNumber(check.error)), "
                + "\"tolerance\": \(jsonNumber(check.tolerance))}"
        }.joined(separator: ", ") + "]}"
        return line
    }.joined(separator: ",\n")
    let failed = outcomes.filter { !$0.passed }.count
    text += "\n  ],\n  \"passed\": \(outcomes.count - failed),\n  \"failed\": \(failed)\n}\n"
    // Written beside the target and renamed, so a reader never sees half a file.
    let temporary = path + ".tmp"
    guard let file = fopen(temporary, "w") else {
        throw OpTableError("cannot write (\(String(cString: strerror(errno))))")
    }
    let written = fputs(text, file) >= 0
    let closed = fclose(file) == 0
    guard written, closed, rename(temporary, path) == 0 else {
        unlink(temporary)
        throw OpTableError("cannot write (\(String(cString: strerror(errno))))")
    }
}

exit(run(parseOptions(Array(CommandLine.arguments.dropFirst()))))
