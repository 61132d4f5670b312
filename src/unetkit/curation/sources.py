"""Where an audit's probabilities come from: a run or ensemble, out-of-fold runs, or files.

Every source answers `probabilities(items, images, sizes)`: per image, (K, h, w) float32 class
probabilities (K=1 for binary models) at the requested size, and `judged_by(item)`: what judged
the image, recorded in audit.csv.

- `PredictorSource`: a `Predictor` (a run folder or an ensemble folder, see ensemble.py). A run
  has seen its own training images, and a model tends to repeat the labels it trained on,
  wrong ones included: audit images a run did not train on, or use out-of-fold predictions.
- `out_of_fold_source`: `unetkit train --folds K` (`folds.train_folds`) on the audited data;
  each image is judged by the fold model that validated on it, so never by a model that trained
  on it (images outside every fold, e.g. a test split, by the K folds together).
- `FolderSource`: probability maps computed before, as `unetkit predict RUN IMAGES --probs`
  writes them: `<stem>_prob.png` (binary, 0-255 = p x 255) or `<stem>_probs.npy` ((K, H, W)
  float), or `<stem>.npy` holding an (H, W) foreground or (K, H, W) class probability array.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.data.folders import DataError, Item, read_stems
from unetkit.io.budget import ImageError
from unetkit.io.maps import as_probabilities, read_map


class SourceError(DataError):
    """Probabilities that cannot be used; the message names the file and the fix (a
    `DataError`, so a `ValueError`)."""


class PredictorSource:
    def __init__(self, predictor, label: str = "run", trained: set[str] | None = None):
        self.predictor, self.label, self.trained = predictor, label, trained
        self.cfg = predictor.cfg

    def probabilities(self, items: list[Item], images: list[np.ndarray],
                      sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        probs = self.predictor.probabilities(images, sizes)
        return [p.float().cpu().numpy() for p in probs]

    def judged_by(self, item: Item) -> str:
        if self.trained is None:
            return self.label
        return f"{self.label} ({'trained on it' if item.name in self.trained else 'held out'})"


def training_names(cfg, root: Path) -> set[str] | None:
    """The stems a run trained on, when it trained on the data folder `root` (None: another
    folder, or unknown)."""
    from unetkit.data.folders import pair_items
    from unetkit.data.splits import split_items

    try:
        if not cfg.data.root or Path(cfg.data.root).resolve() != Path(root).resolve():
            return None
        items, _ = pair_items(Path(root), cfg.data)
        return {it.name for it in split_items(items, Path(root), cfg.data.split)["train"]}
    except (DataError, OSError):
        return None


class FoldSource:
    """Each image judged by the run that held it out (`by_name`), others by `fallback`."""

    def __init__(self, by_name: dict[str, PredictorSource], fallback: PredictorSource):
        self.by_name, self.fallback, self.cfg = by_name, fallback, fallback.cfg

    def probabilities(self, items, images, sizes):
        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        sources = [self.by_name.get(it.name, self.fallback) for it in items]
        for i, src in enumerate(sources):
            groups.setdefault(id(src), []).append(i)
        for idx in groups.values():
            src = sources[idx[0]]
            for i, p in zip(idx, src.probabilities([items[i] for i in idx],
                                                   [images[i] for i in idx],
                                                   [sizes[i] for i in idx]), strict=True):
                out[i] = p
        return out

    def judged_by(self, item: Item) -> str:
        return self.by_name.get(item.name, self.fallback).label


class FolderSource:
    def __init__(self, folder: str | Path, cfg=None):
        self.folder, self.cfg = Path(folder), cfg
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: no such folder of probability maps")

    def find(self, item: Item) -> Path:
        for suffix in ("_prob.png", "_probs.npy", ".npy"):
            path = self.folder / f"{item.name}{suffix}"
            if path.exists():
                return path
        raise SourceError(f"{self.folder}: no probabilities for {item.image.name} (looked for "
                          f"{item.name}_prob.png, {item.name}_probs.npy, {item.name}.npy); "
                          f"make them with `unetkit predict RUN {item.image.parent} --probs "
                          f"--out {self.folder}`")

    def load(self, item: Item) -> np.ndarray:
        """(K, H, W) probabilities, read as `score` reads maps (unetkit.io.maps): 16-bit PNGs
        scaled by their bit depth, a .npy of another class count than the data's refused."""
        path = self.find(item)
        try:
            classes = self.cfg.num_classes if self.cfg is not None else None
            return as_probabilities(read_map(path, classes))
        except ImageError as exc:
            raise SourceError(str(exc)) from None

    def probabilities(self, items, images, sizes):
        out = []
        for item, image, size in zip(items, images, sizes, strict=True):
            arr = self.load(item)
            if arr.shape[1:] != image.shape[:2]:
                path = self.find(item)
                raise SourceError(f"{path}: probabilities are {arr.shape[2]}x{arr.shape[1]} but "
                                  f"the image {item.image.name} is {image.shape[1]}x"
                                  f"{image.shape[0]}; predict at the image's own size")
            out.append(np.stack([resize_float(a, size) for a in arr]))
        return out

    def judged_by(self, item: Item) -> str:
        return f"file {self.find(item).name}"


def resize_float(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W) float map bilinearly resized to (h, w)."""
    if arr.shape == tuple(size):
        return arr.astype(np.float32)
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.BILINEAR), np.float32)


def run_source(run_dir, device: str | None = None, label: str | None = None,
               **kwargs) -> PredictorSource:
    from unetkit.inference.predictor import Predictor

    return PredictorSource(Predictor.from_run(run_dir, device, **kwargs),
                           label or Path(run_dir).name)


def out_of_fold_source(cfg, data_dir, k: int, work_dir, device: str | None = None,
                       progress: bool = True, log=print) -> FoldSource:
    """Train (or reuse, see folds.py) K fold runs of `cfg` on `data_dir` into `work_dir` and
    judge each image by the run that did not train on it."""
    from unetkit.training.folds import train_folds

    cfg = copy.deepcopy(cfg)
    cfg.data.root = str(data_dir)
    work_dir = Path(work_dir)
    train_folds(cfg, work_dir, k, progress=progress, log=log)
    by_name = {}
    for i in range(1, k + 1):
        src = run_source(work_dir / f"fold-{i}", device, label=f"fold-{i} (held out)")
        for stem in read_stems(work_dir / "folds" / f"fold-{i}-val.txt"):
            by_name[stem] = src
    together = run_source(work_dir, device, label=f"{k} folds (none trained on it)")
    return FoldSource(by_name, together)
