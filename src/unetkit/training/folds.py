"""k-fold cross-validation, as nnU-Net trains small medical data sets.

`unetkit train ... --folds K --out DIR` splits the run's data (its training and validation
images together; a test split stays out) into K folds, never splitting a group
(`data.split.group_by` / `group_table`: the frames of one video, the views of one car), and
trains one run per fold into DIR/fold-1 ... DIR/fold-K, each validated on its own fold. Then:

    DIR/folds/fold-N-train.txt, fold-N-val.txt   the stems of each fold's split
    DIR/folds.json      each fold's validation scores and the out-of-fold scores: every image
                        predicted once, by the one model that did not train on it
    DIR/ensemble.json   the K runs as one model (see ensemble.py): `unetkit evaluate DIR`,
                        `predict DIR`, `serve DIR`, ... average their probabilities

A fold whose run already finished (all its epochs in metrics.csv) is kept, so an interrupted
cross-validation continues where it stopped when the same command is run again.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from unetkit.core.files import check_new_run_folder, check_outputs, output_set, write_text
from unetkit.core.text import plural
from unetkit.data.folders import DataError, pair_items
from unetkit.data.splits import fold_splits, group_table, split_items
from unetkit.evaluation.metrics import SegmentationMetrics
from unetkit.runs.ensemble import ENSEMBLE_FILE
from unetkit.runs.folder import read_metrics_csv
from unetkit.training.checks import check_training


def _finished(run_dir: Path, epochs: int) -> bool:
    """The fold ran its epochs, or the epochs its time limit planned (`planned_epochs`)."""
    rows = read_metrics_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else []
    if not rows or not (run_dir / "model.safetensors").exists():
        return False
    return rows[-1]["epoch"] >= min(epochs, rows[-1].get("planned_epochs", epochs))


def _cross_validation(folder: Path) -> bool:
    """Whether `folder` is an earlier cross-validation (it continues) rather than a run."""
    single = any((folder / n).exists() for n in ("config.yaml", "config.json",
                                                  "model.safetensors"))
    return not single and ((folder / "folds").is_dir() or (folder / "folds.json").exists())


def train_folds(cfg, out_dir: str | Path, k: int, progress: bool = True, log=print) -> dict:
    """Train `cfg` once per fold into `out_dir`; write folds.json and ensemble.json."""
    from unetkit.evaluation.evaluate import evaluate
    from unetkit.training.fit import fit

    check_training(cfg)  # before any data is read, as a single run does
    if not cfg.data.root:
        raise DataError("no data: give --data DIR (or data.root in the config)")
    root, out_dir = Path(cfg.data.root), Path(out_dir)
    check_outputs([], folders=[out_dir], input_dirs=[root])
    check_new_run_folder(out_dir, f"a {k}-fold cross-validation", continues=_cross_validation)
    items, problems = pair_items(root, cfg.data)
    if problems:
        raise DataError(f"{root}: {plural(len(problems), 'problem')}; see `unetkit check-data "
                        f"{root}`")
    splits = split_items(items, root, cfg.data.split)
    pool = splits["train"] + splits["val"]
    s = cfg.data.split
    folds = fold_splits(pool, k, s.seed, s.group_by, group_table(root, s))
    (out_dir / "folds").mkdir(parents=True, exist_ok=True)
    pooled = SegmentationMetrics(cfg.num_classes, cfg.data.classes, cfg.data.ignore_index)
    rows = []
    for i, val in enumerate(folds, 1):
        names = {it.name for it in val}
        files = {part: out_dir / "folds" / f"fold-{i}-{part}.txt" for part in ("train", "val")}
        write_text(files["train"], "\n".join(it.name for it in pool if it.name not in names) + "\n")
        write_text(files["val"], "\n".join(it.name for it in val) + "\n")
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.name = f"{cfg.name}-fold-{i}"
        if cfg.train.time_limit is not None:  # the limit is for all k folds: a share each
            fold_cfg.train.time_limit = cfg.train.time_limit / k
        fold_cfg.data.split.train = str(files["train"].resolve())
        fold_cfg.data.split.val = str(files["val"].resolve())
        run = out_dir / f"fold-{i}"
        if _finished(run, cfg.train.epochs):
            log(f"fold {i}/{k}: {run} has finished; kept")
        else:
            log(f"fold {i}/{k}: training on {len(pool) - len(val)} images, validating on "
                f"{len(val)}")
            resume = (run / "checkpoints" / "last.pt").exists()  # an interrupted fold goes on
            fit(fold_cfg, run, resume=resume, progress=progress, log=log)
        metrics = SegmentationMetrics(cfg.num_classes, cfg.data.classes, cfg.data.ignore_index)
        scores = evaluate(run, root, str(files["val"].resolve()), progress=progress,
                          metrics=metrics)
        pooled.load_state(pooled.state() + metrics.state())
        rows.append({"fold": i, "run": run.name, **_flat(scores)})
        log(f"fold {i}/{k}: val mDice@point {scores['mDice_point']:.4f}  dice {scores['dice']:.4f}")
    oof = _flat(pooled.compute())
    members = {"members": [r["run"] for r in rows]}
    with output_set():  # the scores and the ensemble together
        write_text(out_dir / "folds.json",
                   json.dumps({"folds": rows, "out_of_fold": oof}, indent=2))
        write_text(out_dir / ENSEMBLE_FILE, json.dumps(members, indent=2))
    log(f"out of fold ({oof['images']} images): mDice@point {oof['mDice_point']:.4f}  "
        f"mIoU@point {oof['mIoU_point']:.4f}  "
        f"dice {oof['dice']:.4f}; the {k} folds as one model: {out_dir}")
    return {"folds": rows, "out_of_fold": oof}


def _flat(scores: dict) -> dict:
    keys = ("images", "mDice_point", "mIoU_point", "dice", "iou", "precision", "recall")
    out = {key: scores[key] for key in keys}
    if "per_class" in scores:
        out["per_class"] = {name: {m: v[m] for m in ("dice", "mDice_point")}
                            for name, v in scores["per_class"].items()}
    return out
