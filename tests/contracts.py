"""The registry of what each `unetkit` verb writes and reads, for the contract tests
(tests/test_contracts_io.py): every verb of the command line is listed here, as writing (how to
point its output somewhere) or not, and as reading files (which of its inputs a hostile file
can be put in) or not. A new verb is covered by being registered; the tests fail for a verb of
the argument parser that is in neither list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
