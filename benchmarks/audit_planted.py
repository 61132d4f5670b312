"""Recall of planted label errors when a trained run audits images it never trained on.

    python benchmarks/audit_planted.py RUN_DIR [--data ../shared/data/kvasir-seg]
        [--stems splits/pranet-test.txt] [--work runs/audit-planted] [--seed 0]

Takes the images of `--stems` (by default PraNet's 100 Kvasir-SEG test images, which a run of
the `polyp-pranet-cpu` recipe never saw), plants the errors of tests/test_curation.py in their
masks (half of 10 erased, 5 moved by 40 % of the image, 3 pairs swapped, 5 frames copied
across the split), audits them with RUN_DIR and prints the recall of the planted errors in the
top 5, 10 and 20 % of the ranking, and the near-duplicates found. A second audit of the same
images with their masks untouched is written beside it (WORK/clean): its top rows are the
masks a reader should look at.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]
import test_curation  # noqa: E402  (the planting of the tests, one definition)
from unetkit.curation.audit import audit  # noqa: E402
from unetkit.data.folders import read_stems  # noqa: E402


def recall(rows: list[dict], errors: set[str], fraction: float) -> float:
    top = rows[:math.ceil(fraction * len(rows))]
    return sum(r["image"] in errors for r in top) / len(errors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "kvasir-seg"))
    p.add_argument("--stems", default="splits/pranet-test.txt")
    p.add_argument("--work", default="runs/audit-planted")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data, work = Path(args.data), Path(args.work)
    stems = read_stems(data / args.stems)
    source = work / "source"  # only the chosen images, so that plant() draws from them alone
    for sub in ("images", "masks"):
        (source / sub).mkdir(parents=True, exist_ok=True)
        for s in stems:
            link = source / sub / f"{s}.jpg"
            if not link.exists():
                link.symlink_to((data / sub / f"{s}.jpg").resolve())
    test_curation.AUDITED = len(stems)
    truth = test_curation.plant(source, work / "planted", seed=args.seed)
    result = audit(work / "planted", args.run_dir, work / "audit", splits=truth["splits"],
                   top=30, log=lambda *a: None)
    rows = result["rows"]
    r = {f: recall(rows, truth["errors"], f) for f in (0.05, 0.10, 0.20)}
    kinds = {k: sum(row["image"] in truth["errors"] and truth["kinds"][row["image"]] == k
                    for row in rows[:math.ceil(0.2 * len(rows))])
             for k in ("erased", "shifted", "swapped")}
    cross = [d for d in result["duplicates"] if d["cross_split"]]
    copies = sum(any({d["image_a"], d["image_b"]} == {c, s} for d in cross)
                 for c, s in truth["copies"].items())
    print(f"{len(rows)} images, {len(truth['errors'])} planted errors: recall in the top 5 % "
          f"{r[0.05]:.2f}, 10 % {r[0.10]:.2f}, 20 % {r[0.20]:.2f}; in the top 20 % by kind: "
          f"{kinds}; copies found across the split: {copies} of {len(truth['copies'])} "
          f"({len(cross)} cross-split pairs)")
    clean = audit(source, args.run_dir, work / "clean", top=20, log=lambda *a: None)
    print("unplanted masks, most suspicious first:")
    for row in clean["rows"][:10]:
        print(f"  {row['image']}  {row['suspicion']:.2f}  Dice {row['dice']:.2f}  "
              f"{row['reasons']}")


if __name__ == "__main__":
    main()
