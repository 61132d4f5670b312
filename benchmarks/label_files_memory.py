"""Peak memory of `unetkit import-labels` on hostile label files (docs/reliability.md, "Label
files").

    python benchmarks/label_files_memory.py [--src SRC] [CASE ...]

Builds each file from the cases of tests/test_hostile_labels.py (plus a few larger ones named
here) beside three 48x40 images, and runs `unetkit import-labels FILE ... --quiet` from the
sources SRC (default: this checkout's src; give another checkout's src to compare) under
`/usr/bin/time -f %M` with RLIMIT_DATA at 4000 MB. Prints one JSON line per case: the exit
code (139: SIGSEGV) and the peak resident memory in MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import test_hostile_labels as cases  # noqa: E402
from unetkit.curation.labels import export_labels  # noqa: E402

DEFAULT = ["good", "coco-polygon-1e12", "polygon-5e7", "coco-polygon-1e7",
           "coco-20000x20000", "coco-deep-json",
           "cvat-zip-bomb-1gib", "xml-15m-elements", "json-10m-lists"]
CAP_MB = 4000


def build(case: str, data: Path, work: Path) -> Path:
    if case == "good":
        return data / "base.json"
    if case == "polygon-5e7":
        return cases.polygon(1, 1, 5e7, 1, 20, 20)(data, work / case)
    if case == "json-10m-lists":  # 30 MB: the most memory a JSON file under the limit takes
        path = work / "lists.json"
        path.write_text('{"images": [' + ",".join(["[]"] * 10_000_000) + "]}")
        return path
    if case == "xml-15m-elements":  # 60 MB
        path = work / "many.xml"
        path.write_text("<annotations>" + "<a/>" * 15_000_000 + "</annotations>")
        return path
    return cases.HOSTILE[case][0](data, work / case)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", default=DEFAULT)
    p.add_argument("--src", default=str(ROOT / "src"), help="the unetkit sources to measure")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        (data / "images").mkdir(parents=True)
        entries = []
        for i, name in enumerate(cases.NAMES):
            Image.fromarray(np.zeros((cases.H, cases.W, 3), np.uint8)).save(data / "images" / name)
            entries.append((name, cases.box_mask(i)))
        export_labels(entries, data / "base.json", cases.CLASSES)
        export_labels(entries, data / "base.xml", cases.CLASSES)

        def limit():
            resource.setrlimit(resource.RLIMIT_DATA, (CAP_MB << 20, CAP_MB << 20))

        for case in args.cases:
            path, out = build(case, data, work), work / f"out-{case}"
            proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "unetkit",
                                   "import-labels", str(path), "--images", str(data / "images"),
                                   "--out", str(out), "--quiet"],
                                  env=dict(os.environ, PYTHONPATH=args.src), preexec_fn=limit,
                                  capture_output=True, text=True)
            lines = proc.stderr.strip().splitlines()
            peak = int(lines[-1]) // 1024 if lines and lines[-1].isdigit() else None
            print(json.dumps({"case": case, "exit": proc.returncode, "peak_mb": peak}),
                  flush=True)


if __name__ == "__main__":
    main()
