"""A cross-data-set report: one run scored on several data sets, as a page for a reviewer.

    unetkit report RUN --data kvasir-seg:val --data cvc-colondb --negatives polyp-free --out rep/

writes to the out folder:
- report.md and report.html: the papers' table (mDice, mIoU over 256 thresholds...), a table
  per data set at the operating point (mDice@point, mIoU@point, data-set Dice over the frames
  with foreground; sensitivity, false-alarm rate, AUROC over frames; image counts), the
  operating point used, per-image Dice histograms, the reliability diagram and the worst cases;
- papers_table.md: the papers' table alone (`unetkit report` prints it);
- scores.json: each set's scores, as `evaluate --json` writes them;
- per_image.csv: every frame's scores (set, name, positive, detected, score, dice, iou, areas);
- dice_histograms.png, reliability.png, worst/<set>/<name>.png (image | truth | prediction).

The reliability diagram bins every scored pixel by its predicted foreground probability (10
bins) and plots the observed share of true foreground pixels in each bin: a calibrated model
lies on the diagonal.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from unetkit.core.files import check_outputs, output_set, write_text
from unetkit.data.negatives import folder_label
from unetkit.data.splits import parse_data_split
from unetkit.evaluation.paper_table import paper_table
from unetkit.inference.detection import foreground
from unetkit.io.plots import class_palette, figure, panel, save_figure, save_png

WORST = 6  # worst-case panels per data set
RELIABILITY_BINS = 10
THUMB = 256  # panel tiles' height (plots.panel); frames are first strided down near it
REPORT_FILES = ("report.md", "report.html", "per_image.csv", "papers_table.md", "scores.json",
                "dice_histograms.png", "reliability.png")


def _data_set(data) -> tuple[Path, str]:
    """(DIR, SPLIT) as given, or the command line's `DIR[:SPLIT]` (split default: all)."""
    if isinstance(data, (tuple, list)):
        return Path(data[0]), data[1]
    folder, split = parse_data_split(str(data))
    return folder, split or "all"


def format_frames(s: dict) -> str:
    """One line of frame-level scores, as `evaluate` and the report print them."""
    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"
    auroc = "n/a" if s.get("auroc") is None else f"{s['auroc']:.3f}"
    return (f"{s['frames_positive']} with foreground, {s['frames_negative']} without; "
            f"sensitivity {pct(s['sensitivity'])}, false alarms {pct(s['false_alarm_rate'])}, "
            f"AUROC {auroc}; threshold {s['threshold']:.2f}, min_area {s['min_area']:.4f} "
            f"({s['operating_point']})")


def panel_title(row: dict) -> str:
    """A worst case's caption: the Dice of a frame with foreground; for a frame without, the
    share of it flagged (its Dice says nothing: any flagged pixel makes it 0)."""
    if row["positive"]:
        return f"{row['name']}: dice {row['dice']:.2f}"
    return f"{row['name']}: no foreground, {row['predicted_area']:.1%} flagged"


class Collector:
    """Reliability counts and the worst frames' panels of one data set."""

    def __init__(self, palette: np.ndarray):
        self.palette = palette
        self.total = np.zeros(RELIABILITY_BINS)
        self.hits = np.zeros(RELIABILITY_BINS)
        self.prob_sum = np.zeros(RELIABILITY_BINS)
        self.worst: list[tuple[float, str, np.ndarray]] = []

    def __call__(self, row, image, truth, probs, labels) -> None:
        fg = foreground(probs).ravel().astype(np.float64)
        bins = np.clip((fg * RELIABILITY_BINS).astype(int), 0, RELIABILITY_BINS - 1)
        self.total += np.bincount(bins, minlength=RELIABILITY_BINS)
        self.hits += np.bincount(bins, weights=(truth.ravel() > 0), minlength=RELIABILITY_BINS)
        self.prob_sum += np.bincount(bins, weights=fg, minlength=RELIABILITY_BINS)
        # Worst: lowest Dice on frames with foreground, largest flagged area on frames without.
        badness = 1 - row["dice"] if row["positive"] else row["predicted_area"] * row["detected"]
        if badness > 0 and (len(self.worst) < WORST or badness > self.worst[-1][0]):
            step = max(1, int(np.ceil(image.shape[0] / THUMB)))
            small = (image[::step, ::step], truth[::step, ::step], labels[::step, ::step])
            tile = panel(*small, self.palette, panel_title(row), tile=THUMB)
            self.worst = sorted(self.worst + [(badness, row["name"], tile)],
                                key=lambda t: -t[0])[:WORST]


def write_report(run_dir, data: list, negatives: list[str], out, tta: bool = False,
                 progress: bool = True, threshold: float | None = None,
                 min_area: float | None = None, compare: list = (),
                 published: bool = False, device: str | None = None) -> Path:
    """report.md, report.html, per_image.csv and the pictures of `run_dir` scored on each of
    `data` ("DIR" or "DIR:SPLIT" strings, or (DIR, SPLIT) pairs; split default all); the
    papers' table has a row for it and for each run of `compare` (scored on the same sets), and,
    with `published`, the published rows of `paper_table.PUBLISHED`."""
    from unetkit.evaluation.evaluate import evaluate
    from unetkit.runs.check import run_config

    out = Path(out)
    cfg = run_config(run_dir)
    palette = class_palette(cfg.num_classes, cfg.data.class_colors)
    sets = [(f"{d.name}:{split}" if split != "all" else d.name, d, split, [])
            for d, split in map(_data_set, data)]
    sets += [(folder_label(Path(n)), None, "all", [n]) for n in negatives]
    _check_sets(sets)
    if not sets:
        from unetkit.data.folders import DataError
        raise DataError("give at least one --data DIR[:SPLIT] or --negatives DIR")
    check_outputs([(out / name, "the report") for name in REPORT_FILES],
                  input_dirs=[Path(d) for _, d, _, _ in sets if d] + [Path(n) for n in negatives],
                  inputs=[Path(s) for _, _, s, _ in sets if Path(s).is_file()],
                  run_dirs=[Path(r) for r in (run_dir, *compare) if Path(r).is_dir()])
    results, rows, collectors, scored = [], [], [], {}
    for name, folder, split, negs in sets:
        set_rows: list[dict] = []
        col = Collector(palette)
        scores = evaluate(run_dir, folder, split, tta, negatives=negs, progress=progress,
                          rows=set_rows, on_frame=col, threshold=threshold, min_area=min_area,
                          device=device)
        results.append((name, scores))
        rows += [{"set": name, **r} for r in set_rows]
        scored[name] = {r["name"] for r in set_rows}
        collectors.append((name, col, set_rows))
    data_sets = [(name, folder, split) for name, folder, split, negs in sets if not negs]
    table = _paper(run_dir, dict(results), data_sets, compare, tta, progress, published, scored,
                   device)
    with output_set():  # every file of the report, or none: an earlier report stays whole
        pictures = _pictures(out, collectors)
        write_text(out / "per_image.csv", _csv(rows))
        md = _markdown(run_dir, results, pictures, table)
        write_text(out / "papers_table.md", table)  # also printed by `unetkit report`
        write_text(out / "scores.json", json.dumps(dict(results), indent=1) + "\n")
        write_text(out / "report.md", md)
        write_text(out / "report.html", _html(md, run_dir))
    return out


def _check_sets(sets: list) -> None:
    """The same images given twice would be scored twice and shown as two data sets."""
    from unetkit.data.folders import DataError

    seen = {}
    for name, folder, split, negs in sets:
        key = (Path(folder or negs[0]).resolve(), split)
        if key in seen:
            raise DataError(f"{folder or negs[0]}: given twice (as {seen[key]} and {name}); "
                            "give each data set once")
        seen[key] = name


def _paper(run_dir, first: dict, data_sets: list, compare: list, tta: bool, progress: bool,
           published: bool, scored: dict, device: str | None = None) -> str:
    """The papers' table (see paper_table): the report's run, then each run of `compare`."""
    from unetkit.evaluation.evaluate import evaluate
    from unetkit.evaluation.frames import same_folder
    from unetkit.runs.check import run_config

    names = [name for name, _, _ in data_sets]
    measured, unseen = [], {}
    for i, run in enumerate([run_dir, *compare]):
        label = Path(run).name if Path(run).name not in [m for m, _ in measured] else str(run)
        scores = {}
        for name, folder, split in data_sets:
            result = first[name] if i == 0 else evaluate(run, folder, split, tta,
                                                         progress=progress, device=device)
            scores[name] = result["field"]
        root = run_config(run).data.root
        unseen[label] = [name for name, folder, _ in data_sets if not same_folder(folder, root)]
        measured.append((label, scores))
    return paper_table(measured, names, unseen, published, scored)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def _pictures(out: Path, collectors) -> dict:
    fig = figure(6, 3.6)
    ax = fig.subplots()
    for name, _, rows in collectors:
        dice = [r["dice"] for r in rows if r["positive"]]
        if dice:
            ax.hist(dice, bins=np.linspace(0, 1, 21), histtype="step", linewidth=1.5,
                    label=f"{name} ({len(dice)})")
    ax.set(xlabel="per-image Dice (frames with foreground)", ylabel="images",
           title="Per-image Dice")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save_figure(fig, out / "dice_histograms.png")

    fig = figure(4.2, 4.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, col, _ in collectors:
        seen = col.total > 0
        ax.plot((col.prob_sum / np.maximum(col.total, 1))[seen],
                (col.hits / np.maximum(col.total, 1))[seen], marker="o", label=name)
    ax.set(xlabel="predicted foreground probability", ylabel="observed foreground frequency",
           title="Reliability (pixels)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    save_figure(fig, out / "reliability.png")

    worst = {}
    for name, col, _ in collectors:
        safe = _safe(name)
        worst[name] = []
        for _, frame, tile in col.worst:
            rel = f"worst/{safe}/{_safe(frame)}.png"
            save_png(out / rel, tile)
            worst[name].append(rel)
    return worst


def _safe(name: str) -> str:
    """A name usable as a file or folder name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1%}" if pct else f"{v:.4f}"


def _md(text: str) -> str:
    """A name (a data-set folder's) as Markdown text: no raw HTML, no table break."""
    return html.escape(str(text)).replace("|", "&#124;")


def _markdown(run_dir, results, worst, paper: str = "") -> str:
    lines = [f"# unetkit report: {_md(run_dir)}", "",
             "Pixel scores (the papers' columns; mDice@point, mIoU@point: per image then "
             "averaged; dice: from pixel counts summed over the set) count the frames with "
             "foreground only. A frame is flagged when its "
             "predicted foreground covers more than min_area of it; sensitivity is the share of "
             "frames with foreground that are flagged, false alarms the share of frames without "
             "foreground that are flagged, AUROC ranks the per-frame score between the two.", ""]
    lines += ["## The polyp literature's columns", "",
              "mDice and mIoU here are the papers': per image, averaged over 256 thresholds of "
              "the foreground probability map, then over images (frames with foreground only); "
              "wFβ, Sα, Eφ and MAE as PraNet's evaluation computes them. The unseen mean "
              "averages the sets from other folders than the one the model trained on.", "",
              _md_table(paper), "## At the operating point", "",
              "mDice@point and mIoU@point: Dice and IoU of the thresholded masks, per image "
              "then averaged.", ""]
    lines += ["| data set | mDice@point | mIoU@point | dice | sensitivity | false alarms | "
              "AUROC | "
              "images (with / without foreground) | threshold | min_area |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in results:
        lines.append(f"| {_md(name)} | {_fmt(s['mDice_point'])} | {_fmt(s['mIoU_point'])} | "
                     f"{_fmt(s['dice'])} | "
                     f"{_fmt(s['sensitivity'], True)} | {_fmt(s['false_alarm_rate'], True)} | "
                     f"{_fmt(s['auroc'])} | {s['frames_positive']} / {s['frames_negative']} | "
                     f"{s['threshold']:.2f} | {s['min_area']:.4f} |")
    lines += ["", "Every frame's scores: [per_image.csv](per_image.csv).", "",
              "## Per-image Dice", "", "![Per-image Dice](dice_histograms.png)", "",
              "## Reliability", "", "![Reliability diagram](reliability.png)", "",
              "## Worst cases", "",
              "Lowest Dice on frames with foreground; largest flagged area on frames without "
              "(frames scored perfectly are never shown).", ""]
    for name, files in worst.items():
        lines += [f"### {_md(name)}", ""] + [f"![{_md(Path(f).stem)}]({f})" for f in files] + [""]
    lines += ["Not a medical device: these scores describe these data sets only.", ""]
    return "\n".join(lines)


def _md_table(table: str) -> str:
    """paper_table's Markdown with its data-set names made safe (see _md)."""
    return "\n".join(line if not line.startswith("| ") else "| " + " | ".join(
        _md(c.strip()) for c in line.strip().strip("|").split("|")) + " |"
        for line in table.splitlines()) + "\n"


def _html(md: str, run_dir) -> str:
    """The same content as report.md, as a self-standing page (tables, headings, pictures)."""
    body, table = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                cells = [html.escape(html.unescape(c.strip())) for c in line.strip("|").split("|")]
                tag = "th" if not table else "td"
                table.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            body.append('<div class="table"><table>' + "".join(table) + "</table></div>")
            table = []
        if line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<img src="{html.escape(src[:-1])}" '
                        f'alt="{html.escape(html.unescape(alt))}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            title = html.escape(html.unescape(line.lstrip("#").strip()))
            body.append(f"<h{level}>{title}</h{level}>")
        elif line.strip():
            text = html.escape(line).replace("`", "").replace("\\*", "*")  # Markdown marks
            link = '<a href="per_image.csv">per_image.csv</a>'
            body.append(f"<p>{text.replace('[per_image.csv](per_image.csv)', link)}</p>")
    # Wide tables (the papers' table with --published and --compare) scroll inside their own
    # box instead of running off the page; numbers never break, names wrap between words.
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             ".table{overflow-x:auto;margin:1em 0}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td{white-space:"
             "nowrap}th{background:#f3f3f3;min-width:4em}td:first-child,th:first-child{"
             "text-align:left;white-space:normal;min-width:9em;max-width:18em}"
             "img{max-width:100%;display:block;margin:6px 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>unetkit report "
            f"{html.escape(str(run_dir))}</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
