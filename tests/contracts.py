"""The registry of what each `unetkit` verb writes and reads, for the contract tests
(tests/test_contracts_io.py): every verb of the command line is listed here, as writing (how to
point its output somewhere) or not, and as reading files (which of its inputs a hostile file
can be put in) or not. A new verb is covered by being registered; the tests fail for a verb of
the argument parser that is in neither list.

The second half holds the wrong-input cases every verb that reads masks or maps must meet
(CASES) and the registry of those verbs (VERBS), run by tests/test_contracts.py: a case is met
when the verb either decodes the input as declared (its numbers equal those on the clean copy of
the same images) or refuses it with a message naming the file or option and the fix, no
traceback; the test fails for a verb taking --masks, --maps or --data that is not in VERBS.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]"]
RECIPE = ["--recipe", "demo"]
TRAIN = [*TINY, "train.epochs=1", "train.batch_size=4", "train.device='cpu'", "train.samples=0",
         "data.split.val_fraction=0.25"]


@dataclass
class Ctx:
    """The shared inputs of one test: a data folder, a run and another run, maps, labels."""
    data: Path  # images/ and masks/ (Kvasir-SEG layout)
    run: Path  # the run the verbs read
    other: Path  # another run folder, which no verb reads
    maps: Path  # STEM_prob.png maps of every image
    labels: Path  # a COCO file of the images
    stems: Path  # every image's stem, one per line
    submission: Path  # a competition data folder (carvana: test/)
    tmp: Path

    def sets(self, *values: str) -> list[str]:
        return [arg for v in values for arg in ("--set", v)]


@dataclass
class Writer:
    """A verb (or one form of it) that writes: `argv(ctx, out)` points its output at `out`."""
    name: str
    argv: Callable[[Ctx, Path], list[str]]
    kind: str  # "file" (the output names a file; `suffix`) or "folder"
    suffix: str = ""
    reads_run: bool = True  # the output case "a file of the read run" applies
    input_file: Callable[[Ctx], Path] = lambda c: sorted((c.data / "images").iterdir())[0]
    input_dir: Callable[[Ctx], Path] = lambda c: c.data / "images"
    rerun: bool = True  # a second run may replace the first one's result
    skip: dict[str, str] = field(default_factory=dict)  # output case -> why it does not apply

    @property
    def verb(self) -> str:
        return self.name.split()[0]


def _data(c: Ctx) -> list[str]:
    return ["--data", str(c.data)]


WRITERS = [
    Writer("train", lambda c, o: ["train", *RECIPE, *_data(c), *c.sets(*TRAIN), "--out", str(o)],
           "folder", rerun=False, skip={"full disk": "a run is written as it trains; a failed "
                                        "save keeps the last checkpoint (tests/test_faults.py)"}),
    Writer("train --folds", lambda c, o: ["train", *RECIPE, *_data(c), *c.sets(*TRAIN),
                                          "--folds", "2", "--out", str(o)], "folder",
           rerun=False,
           skip={"full disk": "trains two runs; a fold is a run (see train)"}),
    Writer("evaluate", lambda c, o: ["evaluate", str(c.run), *_data(c), "--split", "all",
                                     "--json", str(o)], "file", ".json"),
    Writer("predict", lambda c, o: ["predict", str(c.run), str(c.data / "images"), "--out",
                                    str(o)], "folder"),
    Writer("predict --format coco", lambda c, o: ["predict", str(c.run), str(c.data / "images"),
                                                  "--format", "coco", "--out", str(o)],
           "file", ".json"),
    Writer("predict --format cvat", lambda c, o: ["predict", str(c.run), str(c.data / "images"),
                                                  "--format", "cvat", "--out", str(o)],
           "file", ".xml"),
    Writer("export --format onnx", lambda c, o: ["export", str(c.run), "--format", "onnx",
                                                 "--out", str(o)], "file", ".onnx",
           input_file=lambda c: c.run / "model.safetensors", input_dir=lambda c: c.run / "samples"),
    Writer("export --format hub", lambda c, o: ["export", str(c.run), "--format", "hub",
                                                "--out", str(o)], "folder",
           input_file=lambda c: c.run / "model.safetensors", input_dir=lambda c: c.run / "samples"),
    Writer("submit", lambda c, o: ["submit", str(c.run), "--data", str(c.submission), "--format",
                                   "carvana", "--out", str(o)], "file", ".csv",
           input_file=lambda c: sorted((c.submission / "test").iterdir())[0],
           input_dir=lambda c: c.submission / "test"),
    Writer("report", lambda c, o: ["report", str(c.run), *_data(c), "--out", str(o)], "folder"),
    Writer("score", lambda c, o: ["score", str(c.maps), "--masks", str(c.data / "masks"),
                                  "--suffix", "_prob", "--out", str(o)], "folder",
           reads_run=False, rerun=False, input_dir=lambda c: c.data / "masks"),
    Writer("score --json", lambda c, o: ["score", str(c.maps), "--masks", str(c.data / "masks"),
                                         "--suffix", "_prob", "--json", str(o)], "file", ".json",
           reads_run=False, rerun=False, input_dir=lambda c: c.maps),
    Writer("audit", lambda c, o: ["audit", str(c.data), str(c.maps), "--out", str(o)], "folder",
           reads_run=False),
    Writer("audit --folds", lambda c, o: ["audit", str(c.data), "--folds", "2", "--folds-dir",
                                          str(o), "--out", str(c.tmp / "audit-folds"),
                                          *RECIPE, *c.sets(*TRAIN)], "folder", reads_run=False,
           rerun=False, skip={"full disk": "trains two runs; a fold is a run (see train)"}),
    Writer("import-labels", lambda c, o: ["import-labels", str(c.labels), "--images",
                                          str(c.data / "images"), "--masks",
                                          str(c.data / "masks"), "--classes",
                                          "background,foreground", "--out", str(o)], "folder",
           reads_run=False, rerun=False, input_file=lambda c: c.labels,
           input_dir=lambda c: c.data / "masks"),
    Writer("demo", lambda c, o: ["demo", "--out", str(o)], "folder", reads_run=False,
           rerun=False, skip={"an input": "reads no input", "inside an input folder":
                              "reads no input", "full disk": "trains for a minute; its run is "
                              "a run (see train)",
                              "read-only folder": "writes its synthetic images first"}),
]

# Verbs that write only where the user does not choose, and why that is safe.
FIXED_OUTPUTS = {
    "calibrate": "writes only its own operating_point.json into the run it calibrates "
                 "(check_outputs(owned=...)); tests/test_calibrate_report.py",
    "serve": "writes only the uploads of its page, into its own temporary folder "
             "(deploy/workdir.py); tests/test_serve.py",
}
NOT_WRITING = {"check-data": "lists problems", "recipes": "lists the recipes"}


@dataclass
class Reader:
    """A verb that reads files: `argv(ctx)`, and the input slots a hostile file goes into."""
    name: str
    argv: Callable[[Ctx, Path], list[str]]  # (ctx, a fresh output path)
    slots: tuple[str, ...]  # "images", "masks", "maps", "stems", "labels", "run config"

    @property
    def verb(self) -> str:
        return self.name.split()[0]


READERS = [
    Reader("train", lambda c, o: ["train", *RECIPE, *_data(c), *c.sets(*TRAIN), "--out",
                                  str(o)],
           ("images", "masks")),
    Reader("evaluate", lambda c, o: ["evaluate", str(c.run), *_data(c), "--split", str(c.stems)],
           ("images", "masks", "stems", "run config")),
    Reader("predict", lambda c, o: ["predict", str(c.run), str(c.data / "images"), "--out",
                                    str(o)], ("images", "run config")),
    Reader("predict --format coco", lambda c, o: ["predict", str(c.run), str(c.data / "images"),
                                                  "--format", "coco", "--stems", str(c.stems),
                                                  "--out", str(o / "x.json")],
           ("images", "stems")),
    Reader("calibrate", lambda c, o: ["calibrate", str(c.run), *_data(c), "--split", "all",
                                      "--max-false-alarm", "0.5"], ("images", "masks")),
    Reader("report", lambda c, o: ["report", str(c.run), *_data(c), "--out", str(o)],
           ("images", "masks")),
    Reader("score", lambda c, o: ["score", str(c.maps), "--masks", str(c.data / "masks"),
                                  "--suffix", "_prob"], ("maps", "masks")),
    Reader("audit", lambda c, o: ["audit", str(c.data), str(c.maps), "--stems", str(c.stems),
                                  "--out", str(o)], ("images", "masks", "maps", "stems")),
    Reader("import-labels", lambda c, o: ["import-labels", str(c.labels), "--images",
                                          str(c.data / "images"), "--masks",
                                          str(c.data / "masks"), "--classes",
                                          "background,foreground", "--out", str(o)],
           ("images", "labels")),
    Reader("submit", lambda c, o: ["submit", str(c.run), "--data", str(c.submission),
                                   "--format", "carvana", "--out", str(o / "s.csv")],
           ("run config",)),
    Reader("export", lambda c, o: ["export", str(c.run), "--format", "hub", "--out", str(o)],
           ("run config",)),
    Reader("check-data", lambda c, o: ["check-data", str(c.data)], ("images", "masks")),
]
NOT_READING = {
    "recipes": "reads the shipped recipes only",
    "demo": "reads only what it generated",
    "serve": "reads the run folder like predict (run config) and decodes uploads with the "
             "same image reader; a server is not started here: tests/test_serve.py",
}


# ---------------------------------------------------------------------------------------------
# Masks and maps: the wrong-input cases and the verbs that read them.

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run-0.1.0"  # a trained binary model
COUNT = 6  # images per case: seconds for every verb

REFUSED, SAME, EITHER = "refused", "same", "refused or same"


# ---------------------------------------------------------------------------------------------
# The inputs: a clean folder (images/*.jpg, masks/*.png 0/255, maps/STEM_prob.png = the truth),
# and one variant per case.

def clean_data(source: Path, root: Path) -> Path:
    """COUNT pairs of `source` (the Kvasir-SEG layout) with perfect maps beside them."""
    for sub in ("images", "masks", "maps"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for mask in sorted((source / "masks").glob("*.png"))[:COUNT]:
        shutil.copy(source / "images" / f"{mask.stem}.jpg", root / "images")
        shutil.copy(mask, root / "masks")
        shutil.copy(mask, root / "maps" / f"{mask.stem}_prob.png")
    return root


def _masks(root: Path):
    return [(p, np.asarray(Image.open(p)) > 127) for p in sorted((root / "masks").glob("*.png"))]


def _rewrite_masks(root: Path, write: Callable[[Path, np.ndarray], None]) -> None:
    for path, truth in _masks(root):
        path.unlink()
        write(path, truth)


def _maps(root: Path):
    return [(p, np.asarray(Image.open(p))) for p in sorted((root / "maps").glob("*_prob.png"))]


def colour_masks(root: Path) -> None:  # the polyp red (255, 0, 0) on black
    def write(path, truth):
        rgb = np.zeros((*truth.shape, 3), np.uint8)
        rgb[truth] = (255, 0, 0)
        Image.fromarray(rgb).save(path)
    _rewrite_masks(root, write)


def sixteen_bit_01_masks(root: Path) -> None:
    _rewrite_masks(root, lambda p, t: Image.fromarray(t.astype(np.uint16)).save(p))


def sixteen_bit_0255_masks(root: Path) -> None:  # decodable: 0/255 stored in 16 bits
    _rewrite_masks(root, lambda p, t: Image.fromarray(t.astype(np.uint16) * 255).save(p))


def jpeg_01_masks(root: Path) -> None:
    _rewrite_masks(root, lambda p, t: Image.fromarray(t.astype(np.uint8)).save(
        p.with_suffix(".jpg"), quality=95))


def empty_truth(root: Path) -> None:
    _rewrite_masks(root, lambda p, t: Image.fromarray(np.zeros(t.shape, np.uint8)).save(p))


def maps_other_size(root: Path) -> None:
    for path, grey in _maps(root):
        Image.fromarray(grey).resize((grey.shape[1] // 2, grey.shape[0] // 2)).save(path)


def maps_other_class_count(root: Path) -> None:  # three class planes for a binary data set
    for path, grey in _maps(root):
        path.unlink()
        fg = grey.astype(np.float32) / 255
        np.save(path.with_name(path.name.replace("_prob.png", ".npy")),
                np.stack([1 - fg, fg / 2, fg / 2]))


def maps_sixteen_bit(root: Path) -> None:  # decodable: probabilities scaled by 65535
    for path, grey in _maps(root):
        Image.fromarray((grey.astype(np.uint32) * 257).astype(np.uint16)).save(path)


def maps_in_red_channel(root: Path) -> None:  # decodable: the probability in one channel
    for path, grey in _maps(root):
        rgb = np.zeros((*grey.shape, 3), np.uint8)
        rgb[..., 0] = grey
        Image.fromarray(rgb).save(path)


@dataclass
class Case:
    name: str
    make: Callable[[Path], None] | None  # changes a clean copy; None: the same folder twice
    expect: str  # REFUSED, SAME or EITHER
    kind: str = "masks"  # what it damages: masks, maps, or "twice" (one folder given twice)


CASES = [
    Case("colour masks", colour_masks, REFUSED),
    Case("16-bit 0/1 masks", sixteen_bit_01_masks, REFUSED),
    Case("16-bit 0/255 masks", sixteen_bit_0255_masks, SAME),
    Case("0/1 JPEG masks", jpeg_01_masks, REFUSED),
    Case("empty truth everywhere", empty_truth, REFUSED),
    Case("the same folder twice", None, REFUSED, "twice"),
    Case("maps of another size", maps_other_size, EITHER, "maps"),
    Case("maps of another class count", maps_other_class_count, REFUSED, "maps"),
    Case("16-bit probability maps", maps_sixteen_bit, SAME, "maps"),
    Case("a probability in the red channel", maps_in_red_channel, SAME, "maps"),
]


# ---------------------------------------------------------------------------------------------
# The verbs. `args(work)` gives the command line for a case's folder `work` (images/, masks/,
# maps/; beside it a copy of the fixture run, run/, and the outputs); `numbers(work, proc)` the
# numbers compared with the clean run's; `twice(work)` the command line that gives one folder
# in two roles.

@dataclass
class Verb:
    name: str
    args: Callable[[Path], list[str]] | None
    numbers: Callable[[Path, object], dict] | None = None
    twice: Callable[[Path], list[str]] | None = None
    kinds: tuple[str, ...] = ("masks", "twice")
    expect: dict[str, str] = field(default_factory=dict)  # case name -> its own expectation
    reads_none: str = ""  # why a verb with such options reads no mask or map


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _evaluate_numbers(work, proc):
    s = _json(work.parent / "out.json")
    return {k: s[k] for k in ("images_scored", "frames_positive", "mDice_point", "dice")} | {
        "mDice": (s.get("field") or {}).get("mDice")}


def _score_numbers(work, proc):
    s = _json(work.parent / "out.json")
    return {"images": s["images"], "empty": s["empty_truth"], **s["metrics"]}


def _audit_numbers(work, proc):
    text = (work.parent / "out" / "audit.csv").read_text().splitlines()
    return {"rows": sorted(text[1:])}


def _report_numbers(work, proc):
    return {"per_image": (work.parent / "out" / "per_image.csv").read_text()}


def _calibrate_numbers(work, proc):
    point = _json(work.parent / "run" / "operating_point.json")
    return {k: point[k] for k in ("threshold", "min_area", "frames_positive", "frames_negative")}


def _negatives(work: Path) -> Path:
    """Frames without foreground for `calibrate`: plain grey, beside the case's folder."""
    neg = work.parent / "negatives"
    if not neg.exists():
        neg.mkdir()
        for i in range(4):
            Image.fromarray(np.full((48, 48, 3), 100 + 10 * i, np.uint8)).save(neg / f"n{i}.jpg")
    return neg


VERBS = [
    Verb("evaluate", lambda w: ["evaluate", str(w.parent / "run"), "--data", str(w), "--json",
                                str(w.parent / "out.json")], _evaluate_numbers,
         expect={"empty truth everywhere": EITHER}),  # empty masks are negative frames
    Verb("score", lambda w: ["score", str(w / "maps"), "--masks", str(w / "masks"), "--suffix",
                             "_prob", "--json", str(w.parent / "out.json")], _score_numbers,
         twice=lambda w: ["score", str(w / "masks"), "--masks", str(w / "masks")],
         kinds=("masks", "maps", "twice")),
    Verb("audit", lambda w: ["audit", str(w), str(w / "maps"), "--out", str(w.parent / "out")],
         _audit_numbers, twice=lambda w: ["audit", str(w), str(w), "--out", str(w.parent / "out")],
         kinds=("masks", "maps", "twice"),
         expect={"empty truth everywhere": EITHER}),  # empty masks are audited as such
    Verb("report", lambda w: ["report", str(w.parent / "run"), "--data", str(w), "--out",
                              str(w.parent / "out")], _report_numbers,
         twice=lambda w: ["report", str(w.parent / "run"), "--data", str(w), "--data", str(w),
                          "--out", str(w.parent / "out")],
         expect={"empty truth everywhere": EITHER}),
    Verb("calibrate", lambda w: ["calibrate", str(w.parent / "run"), "--data", str(w),
                                 "--split", "all", "--negatives", str(_negatives(w)),
                                 "--max-false-alarm", "0.5"],
         _calibrate_numbers,
         twice=lambda w: ["calibrate", str(w.parent / "run"), "--data", str(w), "--split",
                          "all", "--negatives", str(w / "images"), "--max-false-alarm", "0.5"]),
    Verb("import-labels", None, kinds=("twice",),
         twice=lambda w: ["import-labels", str(w / "labels.json"), "--images", str(w / "images"),
                          "--masks", str(w / "masks"), "--out", str(w / "masks")]),
    Verb("check-data", lambda w: ["check-data", str(w), "--recipe", "demo"],
         lambda w, proc: {"out": proc.stdout.splitlines()[-1].replace(str(w), "DATA")},
         kinds=("masks",),
         expect={"empty truth everywhere": EITHER}),
    Verb("train", None, reads_none="its data is checked as `check-data` checks it (one reader, "
         "MaskDecoder.problems, covered by check-data's cases); a training per case costs "
         "minutes"),
    Verb("export", None, reads_none="--data (int8) scores through evaluate_predictor, the "
         "path of `evaluate`'s cases; it needs onnxruntime"),
    Verb("submit", None, reads_none="--data is a competition's test images: no masks"),
    Verb("predict", None, reads_none="--masks is an output switch (write mask PNGs); "
         "--label-masks are read by the reader of `check-data` (MaskDecoder)"),
]
