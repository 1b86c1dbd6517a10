#!/usr/bin/env python3
"""Data-parallel scaling of `mpirun -np N vitforge train|prune` (issue 18), measured and projected.

Measures, with a vitforge built with the MPI trait (`swift build -c release --traits MPI --product vitforge
--scratch-path .build-mpi-trait`):
  1. the gradient exchange of one step for the fm-vit-c, DeiT-Tiny and DeiT-B (synthetic, 86.6M) gradient sizes
     (`vitforge bench-allreduce`): on 1 rank it is only the device<->host bucket copies; on 2 ranks of this machine
     the copies plus MPI_Allreduce over shared memory;
  2. the compute of one training step per rank (`vitforge bench --train`): fm-vit-c and DeiT-Tiny measured, DeiT-B
     scaled from DeiT-Tiny by the ratio of MACs per image (a DeiT-B step is too slow to time on this machine);
then projects the efficiency at 8 and 64 ranks on a 100 Gb/s network with the ring all-reduce cost model
    T(p) = 2(p-1)*alpha*buckets + 2(p-1)/p * bytes / bandwidth   (+ the measured copies)
    efficiency = compute / (compute + T(p) + copies)  (weak scaling: the per-rank batch is fixed; no overlap)
and the compute time per step below which the efficiency falls under 90% (where overlapping the all-reduce with
the backward would start to pay).

Usage: python3 Benchmarks/mpi_scaling.py [--binary .build-mpi-trait/release/vitforge] [--json out.json]
       python3 Benchmarks/mpi_scaling.py --reuse out.json [--bandwidth-gbit 400]   (other network, same data)
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(command, env=None):
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr}")
    return result.stdout


def allreduce(binary, ranks, runs):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
    out = run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), binary, "bench-allreduce",
               "--runs", str(runs)], env)
    return {row["model"]: row for row in json.loads(out.strip().splitlines()[-1])}


def compute(binary, model, heads, batch, runs):
    path = f"/tmp/vitforge-mpi-scaling-{os.getpid()}.json"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    run([binary, "bench", "--device", "cpu", "--train", "--model", model, "--heads", str(heads), "--batch", str(batch),
         "--runs", str(runs), "--warmup", "1", "--json", path], env)
    with open(path) as f:
        row = json.load(f)["results"][0]
    os.remove(path)
    return row["latency_ms_median"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build-mpi-trait/release/vitforge"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bandwidth-gbit", type=float, default=100.0)
    parser.add_argument("--latency-us", type=float, default=5.0, help="per-message latency alpha")
    parser.add_argument("--json")
    parser.add_argument("--reuse", help="recompute the projection from the measurements in this --json file")
    args = parser.parse_args()

    if args.reuse:
        with open(args.reuse) as f:
            measured = json.load(f)["measured"]
    else:
        # (file, heads, per-rank batch); the fixtures are timm files without a vitforge config, hence --heads.
        fixtures = {"fm-vit-c": (os.path.join(ROOT, "Tests/Fixtures/fm-vit-c.safetensors"), 2, 128),
                    "deit-tiny": (os.path.join(ROOT, "../shared/fixtures/deit_tiny_patch16_224.safetensors"), 3, 32)}
        measured = {"one": allreduce(args.binary, 1, args.runs), "two": allreduce(args.binary, 2, args.runs),
                    "step": {name: compute(args.binary, path, heads, batch, args.runs)
                             for name, (path, heads, batch) in fixtures.items()}}
    one, two, step = measured["one"], measured["two"], dict(measured["step"])
    macs = {name: row["macsPerImage"] for name, row in one.items()}
    # DeiT-B at DeiT-Tiny's per-rank batch: the tiny step scaled by MACs per image.
    step["deit-base"] = step["deit-tiny"] * macs["deit-base"] / macs["deit-tiny"]
    batches = {"fm-vit-c": 128, "deit-tiny": 32, "deit-base": 32}

    bandwidth = args.bandwidth_gbit * 1e9 / 8  # bytes/s
    alpha = args.latency_us * 1e-6
    rows = []
    print(f"ring all-reduce at {args.bandwidth_gbit:g} Gb/s, alpha {args.latency_us:g} us; "
          "compute = one training step per rank on this machine's CPU backend")
    print(f"{'model':10} {'params':>7} {'MB':>6} {'batch':>5} {'step ms':>9} {'copies ms':>9} {'2 ranks ms':>10} "
          f"{'net(8) ms':>9} {'eff 8':>6} {'net(64) ms':>10} {'eff 64':>6} {'90% at 64 needs step >= ms':>27}")
    for name in ["fm-vit-c", "deit-tiny", "deit-base"]:
        size = one[name]["bytes"]
        buckets = one[name]["buckets"]
        copies = one[name]["allreduceMsMedian"]
        entry = {"model": name, "parameters": one[name]["parameters"], "bytes": size, "batchPerRank": batches[name],
                 "stepMs": step[name], "stepEstimated": name == "deit-base", "copiesMs": copies,
                 "twoRanksSharedMemoryMs": two[name]["allreduceMsMedian"]}
        line = (f"{name:10} {one[name]['parameters'] / 1e6:6.2f}M {size / 1e6:6.1f} {batches[name]:5d} "
                f"{step[name]:9.1f} {copies:9.2f} {two[name]['allreduceMsMedian']:10.2f}")
        for p in (8, 64):
            network = (2 * (p - 1) * alpha * buckets + 2 * (p - 1) / p * size / bandwidth) * 1e3
            efficiency = step[name] / (step[name] + network + copies)
            entry[f"networkMs{p}"] = network
            entry[f"efficiency{p}"] = efficiency
            line += f" {network:{9 if p == 8 else 10}.2f} {efficiency:6.1%}"
        entry["stepMsFor90PercentAt64"] = 9 * (entry["networkMs64"] + copies)
        line += f" {entry['stepMsFor90PercentAt64']:27.1f}"
        print(line + (" (step: deit-tiny's x MACs)" if name == "deit-base" else ""))
        rows.append(entry)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bandwidthGbit": args.bandwidth_gbit, "latencyUs": args.latency_us, "rows": rows,
                       "measured": measured}, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
