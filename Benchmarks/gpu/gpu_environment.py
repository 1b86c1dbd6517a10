#!/usr/bin/env python3
"""The environment stage of the GPU run: what the machine has, written down whether or not OpenCL works there, so
that the next design decision is made on facts (issue 30). NVIDIA's driver, its OpenCL library
(libnvidia-opencl.so.1, in a read-only mount such as /usr/local/nvidia), libcuda, the ICD files already present,
glibc, CPU, Python packages. When the OpenCL library exists, an ICD file naming it goes into --icd-dir (run.sh then
points OCL_ICD_VENDORS there). Standard library only.

    gpu_environment.py --json OUT.json --icd-dir DIR [--torch STATE]
"""
import argparse
import fnmatch
import glob
import json
import os
import platform
import subprocess

# Where container runtimes and distributions put the driver's libraries.
LIBRARY_FOLDERS = ["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64",
                   "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/local/cuda/compat", "/usr/local/cuda/lib64",
                   "/usr/lib/wsl/lib"]


def command(arguments, limit=20):
    try:
        done = subprocess.run(arguments, capture_output=True, text=True, timeout=limit)
        return {"exit_code": done.returncode, "output": (done.stdout + done.stderr).strip()[-4000:]}
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": str(error)}


def libraries(pattern):
    """Every file matching `pattern` in the usual folders and in ldconfig's cache, resolved, with its target."""
    found = set()
    for folder in LIBRARY_FOLDERS:
        found.update(glob.glob(os.path.join(folder, pattern)))
    cache = command(["ldconfig", "-p"]).get("output", "")
    for line in cache.splitlines():
        if "=>" in line and fnmatch.fnmatch(line.split("=>")[0].strip().split(" ")[0], pattern):
            found.add(line.split("=>")[1].strip())
    return [{"path": path, "resolves_to": os.path.realpath(path), "exists": os.path.exists(path)}
            for path in sorted(found)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--icd-dir", required=True)
    parser.add_argument("--torch", default="unknown")
    args = parser.parse_args()
    facts = {
        "host": platform.node(), "kernel": platform.release(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "glibc": " ".join(platform.libc_ver()), "python": platform.python_version(),
        "torch": args.torch,
        "nvidia_smi": command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm",
                               "--format=csv"]),
        "nvidia_smi_full": command(["nvidia-smi"]),
        "libnvidia_opencl": libraries("libnvidia-opencl.so*"),
        "libcuda": libraries("libcuda.so*"),
        "libOpenCL_on_system": libraries("libOpenCL.so*"),
        "icd_files": {path: open(path).read().strip() for path in sorted(glob.glob("/etc/OpenCL/vendors/*"))
                      if os.path.isfile(path)},
        "environment": {key: os.environ.get(key) for key in ["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                                                             "CUDA_VERSION", "LD_LIBRARY_PATH", "OCL_ICD_VENDORS"]},
    }
    try:
        with open("/proc/cpuinfo") as file:
            facts["cpu_model"] = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")),
                                      None)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as file:
            facts["os"] = next((line.split("=", 1)[1].strip().strip('"') for line in file
                                if line.startswith("PRETTY_NAME=")), None)
    except OSError:
        pass
    for package in ["timm", "safetensors", "onnxruntime", "numpy"]:
        try:
            facts.setdefault("python_packages", {})[package] = __import__(package).__version__
        except Exception as error:  # noqa: BLE001 (any import failure is a fact to record)
            facts.setdefault("python_packages", {})[package] = f"missing ({type(error).__name__})"
    existing = [entry["resolves_to"] for entry in facts["libnvidia_opencl"] if entry["exists"]]
    if existing:
        os.makedirs(args.icd_dir, exist_ok=True)
        with open(os.path.join(args.icd_dir, "nvidia.icd"), "w") as file:
            file.write(existing[0] + "\n")
        facts["icd_written"] = {"folder": args.icd_dir, "library": existing[0]}
    else:
        facts["icd_written"] = None
        facts["skipped"] = "no libnvidia-opencl.so* on this machine: no NVIDIA OpenCL (ICD left as the system's)"
    with open(args.json, "w") as file:
        json.dump(facts, file, indent=1, sort_keys=True)
    print(json.dumps({key: facts[key] for key in ["nvidia_smi", "libnvidia_opencl", "libcuda", "icd_files",
                                                   "icd_written", "glibc", "torch"]}, indent=1))


if __name__ == "__main__":
    main()
