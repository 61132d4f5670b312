"""Audit all of Kvasir-SEG with out-of-fold predictions: which of its 1000 masks to check first.

    python benchmarks/audit_kvasir.py [--data ../shared/data/kvasir-seg] [--folds 5]
        [--recipe kvasir-binary] [--set KEY=VALUE ...] [--work runs/audit-kvasir] [--top 60]

Trains `--folds` fold models of the recipe (`unetkit train --folds K`: each image is held out
by exactly one fold, so each mask is judged by a model that never trained on it), then writes
WORK/audit/audit.csv, audit.html and duplicates.csv, with the near-duplicate frames between
the Medico 2020 train and validation splits and between PraNet's train and test splits. The
training is long (the kvasir-binary recipe: about half an hour per epoch on 2 CPU cores). On a
CPU, `--recipe polyp-sota-cpu --set train.time_limit=55m` fits the whole audit in an hour on 2
cores: the folds share the limit, 11 minutes each (measured: 4 epochs a fold, fold models at
val mDice 0.83-0.85; benchmarks/RESULTS.md). Finished folds are kept: run the same command again to
continue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from unetkit import config as config_mod  # noqa: E402
from unetkit.curation.audit import audit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "kvasir-seg"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--recipe", default="kvasir-binary")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--work", default="runs/audit-kvasir")
    p.add_argument("--top", type=int, default=60)
    args = p.parse_args()
    data, work = Path(args.data), Path(args.work)
    if not (data / "images").is_dir():
        sys.exit(f"{data}: Kvasir-SEG not found (give --data)")
    # The folds pool every image: no split files, no held-out test split.
    cfg = config_mod.load(args.recipe, overrides=["data.split.train=null", "data.split.val=null",
                                                  "data.split.test_fraction=0", *args.overrides],
                          data_root=str(data))
    splits = {"medico-train": data / "splits" / "medico2020-train.txt",
              "medico-val": data / "splits" / "medico2020-val.txt"}
    result = audit(data, None, work / "audit", cfg=cfg, folds=args.folds,
                   folds_dir=work / "folds", splits=splits, top=args.top)
    rows = result["rows"]
    print(f"{len(rows)} masks audited; mean Dice against the out-of-fold prediction "
          f"{sum(r['dice'] for r in rows) / len(rows):.3f}; the ten most suspicious:")
    for r in rows[:10]:
        print(f"  {r['image']}  {r['suspicion']:.2f}  {r['reasons']}")
    # PraNet's protocol: the same hashes, other splits (duplicates.csv holds the Medico ones).
    from unetkit.data.folders import read_stems

    pranet = {s: "pranet-train" for s in read_stems(data / "splits" / "pranet-train.txt")}
    pranet |= {s: "pranet-test" for s in read_stems(data / "splits" / "pranet-test.txt")}
    medico = [d for d in result["duplicates"] if d["cross_split"]]
    names = [r["image"] for r in rows]
    crossing = [d for d in result["duplicates"]
                if pranet.get(d["image_a"]) != pranet.get(d["image_b"])]
    print(f"near-duplicate pairs across Medico 2020 train/val: {len(medico)}; across PraNet "
          f"train/test: {len(crossing)} (of {len(result['duplicates'])} pairs among "
          f"{len(names)} images)")


if __name__ == "__main__":
    main()
