"""CPU prediction latency of one 256x256 image: PyTorch vs ONNX Runtime, in the same run.

    python benchmarks/latency_cpu.py [--runs 20] [--threads 2] [--write]

Measures the network alone (a normalised (1, 3, 256, 256) tensor in, logits out) for the classic
U-Net and the ResNet34 U-Net (random weights: latency does not depend on their values), after
warm-up, as the median of --runs calls. Both runtimes get the same number of threads. With
--write, the table is appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]
from run_fixtures import make_run  # noqa: E402  (a run folder without training)
from unetkit.deploy.export import export_onnx  # noqa: E402
from unetkit.inference.onnx import OnnxModel  # noqa: E402
from unetkit.runs.loading import load_model  # noqa: E402

MODELS = {"classic U-Net (31.0 M)": ["model.arch=unet"],
          "ResNet34 U-Net (timm)": ["model.arch=timm-unet", "model.encoder=resnet34"]}


def median_ms(fn, x, runs: int) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    x = torch.randn(1, 3, 256, 256)
    rows = []
    with tempfile.TemporaryDirectory() as d, torch.no_grad():
        for name, overrides in MODELS.items():
            run = make_run(Path(d) / name.split()[0], overrides + ["data.image_size=[256, 256]"])
            export_onnx(run, run / "model.onnx")
            model = load_model(run)
            onnx_model = OnnxModel(run / "model.onnx", threads=args.threads)
            t_torch, t_onnx = median_ms(model, x, args.runs), median_ms(onnx_model, x, args.runs)
            rows.append(f"| {name} | {t_torch:.1f} | {t_onnx:.1f} | {t_torch / t_onnx:.2f}x |")
            print(rows[-1], flush=True)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"""
## CPU prediction latency, one 256x256 image: PyTorch vs ONNX Runtime

{datetime.date.today()}; {cpu}; {args.threads} threads for both; median of {args.runs} runs after
3 warm-up calls; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python
{platform.python_version()}. Network alone (normalised tensor in, logits out), random weights.
Command: `python benchmarks/latency_cpu.py --runs {args.runs} --threads {args.threads} --write`

| model | PyTorch ms | ONNX Runtime ms | speed-up |
|---|---|---|---|
""" + "\n".join(rows) + "\n"
    print(text)
    if args.write:
        path = Path(__file__).with_name("RESULTS.md")
        old = path.read_text() if path.exists() else "# Benchmark results\n"
        path.write_text(old + text)


if __name__ == "__main__":
    main()
