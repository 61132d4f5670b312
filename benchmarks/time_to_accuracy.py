"""Validation score against wall time, from runs' metrics.csv (the `seconds` column: each epoch's
training and validation time), one line per run.

    python benchmarks/time_to_accuracy.py --run "64 px=runs/a" --run "96 px=runs/b" \\
        --out benchmarks/time_to_accuracy.png
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's unetkit

from unetkit.runs.folder import read_metrics_csv  # noqa: E402

# The score at the operating point, under its current name or the older one.
SCORES = ("val_mDice_point", "val_mDice")


def curve(run_dir: Path) -> tuple[list[float], list[float], str]:
    """(minutes since the start, score after each epoch, the column read)."""
    rows = read_metrics_csv(run_dir / "metrics.csv")
    column = next((c for c in SCORES if rows and c in rows[0]), None)
    if column is None:
        raise SystemExit(f"{run_dir / 'metrics.csv'}: no {' or '.join(SCORES)} column")
    minutes = list(itertools.accumulate(r["seconds"] / 60 for r in rows))
    return minutes, [r[column] for r in rows], column


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR",
                   help="a run folder and its label in the legend (repeatable)")
    p.add_argument("--title", default="validation score against wall time")
    p.add_argument("--out", default="time_to_accuracy.png", help="the PNG to write")
    args = p.parse_args(argv)
    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    ax = fig.subplots()
    column = SCORES[-1]
    for item in args.run:
        label, sep, folder = item.partition("=")
        if not sep:
            p.error(f"--run {item}: give LABEL=RUN_DIR")
        minutes, scores, column = curve(Path(folder))
        ax.plot(minutes, scores, marker="o", label=label)
        best = max(range(len(scores)), key=scores.__getitem__)
        ax.annotate(f"{scores[best]:.3f}", (minutes[best], scores[best]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("wall time, training + validation (minutes)")
    ax.set_ylabel(f"{column.removeprefix('val_').replace('_point', '@point')} (validation)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
