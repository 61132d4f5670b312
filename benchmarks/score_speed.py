"""Speed and memory of `score_folders` (unetkit's field metrics) against PySODMetrics.

Makes N 576x720 prediction maps (smooth, shifted, noisy maps made from real Kvasir-SEG masks
resized to 576x720, or synthetic ellipses when the data set is missing), scores them with
unetkit in one process at 250 and at N images (peak memory after each: it must not grow with
N), then with worker processes, then with PySODMetrics (if installed, one process) on the same
files, read the same way. --work DIR keeps the maps (a second run reuses them).

    python benchmarks/score_speed.py [--count 1000] [--reference-count N] [--workers W]
                                     [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from unetkit.evaluation.score import read_map, read_truth, score_folders  # noqa: E402

DATA = Path(os.environ.get("UNETKIT_DATA", Path(__file__).resolve().parents[2] / "shared"
                           / "data"))
H, W = 576, 720


def truth_masks(count: int, rng) -> list[np.ndarray]:
    folder = DATA / "kvasir-seg" / "masks"
    paths = sorted(folder.glob("*.jpg"))[:count] if folder.is_dir() else []
    if paths:
        return [np.asarray(Image.open(p).convert("L").resize((W, H), Image.NEAREST)) > 128
                for p in paths]
    yy, xx = np.mgrid[:H, :W]
    out = []
    for _ in range(count):
        cy, cx, ry, rx = rng.uniform(100, 470), rng.uniform(100, 620), *rng.uniform(30, 150, 2)
        out.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
    return out


def make_set(root: Path, count: int, rng) -> tuple[Path, Path]:
    maps, masks = root / "maps", root / "masks"
    maps.mkdir(parents=True), masks.mkdir(parents=True)
    truths = truth_masks(100, rng)
    for i in range(count):
        gt = truths[i % len(truths)]
        shifted = np.roll(gt, tuple(rng.integers(-25, 26, 2)), (0, 1)).astype(np.uint8) * 255
        soft = np.asarray(Image.fromarray(shifted).filter(ImageFilter.GaussianBlur(
            rng.uniform(2, 12))), np.float64)
        noisy = soft * rng.uniform(0.6, 1) + rng.normal(0, 12, gt.shape)
        Image.fromarray(noisy.clip(0, 255).round().astype(np.uint8)).save(maps / f"{i:04d}.png")
        Image.fromarray(gt.astype(np.uint8) * 255).save(masks / f"{i:04d}.png")
    return maps, masks


def cpu_s() -> float:
    """CPU seconds used so far by this process and its finished worker processes (the machine
    may be shared: CPU time is what the work costs, wall time what it took)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_mib() -> str:
    """Peak resident memory of this process and of the largest worker process so far."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"{own:.0f} MiB (largest worker {child:.0f} MiB)"


def subset(root: Path, maps: Path, masks: Path, count: int) -> tuple[Path, Path]:
    """The first `count` pairs, as links in their own folders."""
    sub_maps, sub_masks = root / f"maps{count}", root / f"masks{count}"
    if sub_maps.is_dir():
        return sub_maps, sub_masks
    sub_maps.mkdir(), sub_masks.mkdir()
    for path in sorted(maps.iterdir())[:count]:
        (sub_maps / path.name).symlink_to(path)
        (sub_masks / path.name).symlink_to(masks / path.name)
    return sub_maps, sub_masks


def reference(maps: Path, masks: Path, count: int) -> tuple[float, float, dict]:
    import py_sod_metrics as sod

    fm = sod.FmeasureV2({"dice": sod.DICEHandler(True, False),
                         "iou": sod.IOUHandler(True, False)})
    metrics = [fm, sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()]
    start, cpu = time.perf_counter(), cpu_s()
    for path in sorted(maps.iterdir())[:count]:
        pred, gt = read_map(path), read_truth(masks / path.name).astype(np.uint8) * 255
        for metric in metrics:
            metric.step(pred, gt)
    elapsed, cpu = time.perf_counter() - start, cpu_s() - cpu
    dice = fm.get_results()["dice"]["dynamic"]
    return elapsed, cpu, {"mDice": float(dice.mean()), "Sm": float(metrics[1].get_results()["sm"]),
                     "wFm": float(metrics[3].get_results()["wfm"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--reference-count", type=int, default=None,
                        help="images PySODMetrics scores (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes for the last unetkit run (default: the CPU count)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the maps")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    root = Path(args.work or tempfile.mkdtemp(prefix="score_speed_"))
    start = time.perf_counter()
    if (root / "maps").is_dir():  # reuse the maps of an earlier run
        maps, masks = root / "maps", root / "masks"
    else:
        maps, masks = make_set(root, args.count, rng)
    print(f"{args.count} maps of {W}x{H} (width x height) ready in "
          f"{time.perf_counter() - start:.1f} s ({root})")
    print(f"peak memory before scoring: {peak_mib()}")
    small = subset(root, maps, masks, min(250, args.count))
    for workers, count in ((1, len(list(small[0].iterdir()))), (1, args.count),
                           (args.workers, args.count)):
        m, k = (maps, masks) if count == args.count else small
        start, cpu = time.perf_counter(), cpu_s()
        result = score_folders(m, k, progress=False, workers=workers)
        elapsed, cpu = time.perf_counter() - start, cpu_s() - cpu
        print(f"unetkit      {count:5d} images, {workers} process(es): {elapsed:6.1f} s "
              f"({1e3 * elapsed / count:.1f} ms/image, CPU {1e3 * cpu / count:.1f} ms/image), "
              f"peak memory {peak_mib()}; mDice "
              f"{result['metrics']['mDice']:.4f} Sm {result['metrics']['Sm']:.4f} "
              f"wFm {result['metrics']['wFm']:.4f}")
    try:
        import py_sod_metrics  # noqa: F401
    except ImportError:
        print("pysodmetrics is not installed: no reference timing")
        return
    count = args.reference_count or args.count
    elapsed, cpu, scores = reference(maps, masks, count)
    print(f"pysodmetrics {count:5d} images, 1 process:    {elapsed:6.1f} s "
          f"({1e3 * elapsed / count:.1f} ms/image, CPU {1e3 * cpu / count:.1f} ms/image); "
          + " ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
