#!/usr/bin/env python3
"""CI check of the HTML report: three prunes of fm-vit-c on a small Fashion-MNIST subset (magnitude with fine-tuning,
ViT-Slim with a search epoch, random heads), `vitforge report` over their JSON reports, then the page opened in
headless Chromium (Debian's `chromium`): no console errors, every chart present in the rendered DOM, every SVG
well-formed XML, nothing loaded from elsewhere. Prints the screenshot's path.

    python3 Tests/Deployment/report_check.py OUT_DIR
"""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from deploy_support import FIXTURES, fashion_mnist_subset, vitforge

PAGE_CHARTS = ["accuracy-macs", "latency-batch"]
PER_REPORT_CHARTS = ["widths-heads", "widths-qk", "widths-v", "widths-mlp", "curves", "phases"]
CHROMIUM = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--enable-logging=stderr", "--v=0"]


def chromium(page, *extra):
    result = subprocess.run([*CHROMIUM, *extra, "file://" + os.path.abspath(page)], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        sys.exit(f"chromium failed on {page}:\n{result.stderr[-2000:]}")
    return result


def console_errors(stderr):
    """Chromium's console lines (`CONSOLE(...)` / `Console` log entries) at error level, and uncaught errors."""
    return [line for line in stderr.splitlines()
            if re.search(r"CONSOLE|console", line) and re.search(r"error|Error|Uncaught", line)]


def check_page(page, reports, screenshot):
    html = open(page, encoding="utf-8").read()
    # Self-contained: the only URL is SVG's namespace; no scripts, stylesheets or images from files or the network.
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html)) - {"http://www.w3.org/2000/svg"}
    assert not urls, f"{page} refers to {sorted(urls)}"
    assert not re.search(r"<(script|img|link|iframe)\b", html), f"{page} loads something"
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    for svg in svgs:
        ET.fromstring(svg)  # raises on malformed SVG

    rendered = chromium(page, "--dump-dom")
    errors = console_errors(rendered.stderr)
    assert not errors, f"console errors on {page}: {errors}"
    names = re.findall(r'data-chart="([^"]+)"', rendered.stdout)
    expected = PAGE_CHARTS + [f"{chart}-{index}" for index in range(1, reports + 1) for chart in PER_REPORT_CHARTS]
    missing = [chart for chart in expected if chart not in names]
    assert not missing, f"{page}: charts missing from the rendered page: {missing}"
    chromium(page, f"--screenshot={screenshot}", "--window-size=1200,3200")
    assert os.path.getsize(screenshot) > 10_000, "screenshot is empty"
    return len(names)


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "report-check")
    os.makedirs(out, exist_ok=True)
    data = fashion_mnist_subset(os.path.join(out, "data"))
    model = os.path.join(FIXTURES, "fm-vit-c.safetensors")
    common = ["--model", model, "--heads", "2", "--data", data, "--latency-batches", "1,8,32", "--device", "cpu"]
    runs = {
        "magnitude": ["--method", "magnitude", "--keep-mlp", "0.5", "--finetune-epochs", "1"],
        "slim": ["--method", "slim", "--epochs", "1", "--keep-mlp", "0.5", "--keep-attn", "0.6"],
        "random": ["--method", "random", "--keep-heads", "0.5", "--keep-mlp", "0.7"],
    }
    reports = []
    for name, flags in runs.items():
        report = os.path.join(out, name + ".json")
        extra = ["--html", os.path.join(out, name + ".html")] if name == "magnitude" else []
        vitforge("prune", *common, *flags, "--out", os.path.join(out, name + ".safetensors"), "--report", report,
                 *extra)
        reports.append(report)
    page = os.path.join(out, "report.html")
    vitforge("report", *reports, "--html", page)

    # The console check must be able to fail: a page that logs an error has to be caught.
    canary = os.path.join(out, "canary.html")
    with open(canary, "w") as handle:
        handle.write("<!doctype html><html><body><script>console.error('canary error')</script></body></html>")
    assert console_errors(chromium(canary, "--dump-dom").stderr), "the console check does not see console errors"

    charts = check_page(page, len(reports), os.path.join(out, "report.png"))
    prune_page_charts = check_page(os.path.join(out, "magnitude.html"), 1, os.path.join(out, "magnitude.png"))
    print(f"report check: {charts} charts on {page}, {prune_page_charts} on prune --html's page; "
          "no console errors")
    print(f"screenshot: {os.path.join(out, 'report.png')}")


if __name__ == "__main__":
    main()
