"""The web page's model and what it shows, free of Gradio: `serve` builds the page on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.deploy.workdir import WorkFolder
from unetkit.inference.predictor import Predictor
from unetkit.inference.summary import summarize
from unetkit.io.budget import ImageError
from unetkit.io.images import read_image, resize_image
from unetkit.io.plots import color_mask, overlay, save_png
from unetkit.runs.check import read_model_card, resolve_model_dir

# The mask of an upload is made at most this large (longer side): the network's input comes from
# the full upload, through the run's preprocessing as in `unetkit predict`, but the class
# probabilities are computed at the output's size, so a 50-megapixel photo would otherwise cost
# gigabytes. Areas are then in pixels of the shrunk image.
MAX_SIDE = 2048  # images and video frames alike
MAX_VIDEO_SECONDS = 60.0  # longer uploads are refused (`unetkit predict` takes any)
EXAMPLE_COUNT = 3  # synthetic example images offered on the page
NOT_A_DEVICE = ("**Not a medical device.** This page shows a research model's output for "
                "inspection only; it must not be used for diagnosis or treatment decisions.")


def mask_stats(labels: np.ndarray, classes: list[str]) -> dict[str, dict]:
    """Per foreground class: its area in pixels, its fraction of the image, its region count;
    the numbers of `unetkit predict`'s summary.json."""
    per_class = summarize("", labels, classes)["classes"]
    return {name: {"area_px": c["area_px"], "area_fraction": c["area_fraction"],
                   "regions": c["components"]} for name, c in per_class.items()}


def shrink(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str]:
    """`image` shrunk so that its longer side is at most `max_side`, and a note saying so ("" if
    it was small enough)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, ""
    scale = max_side / max(w, h)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize_image(image, size), f"reduced from {w}x{h} to {size[1]}x{size[0]} pixels"


def read_upload(path: str | Path, channels: int, max_side: int = MAX_SIDE
                ) -> tuple[np.ndarray, str]:
    """An uploaded file as an (H, W, channels) uint8 array, shrunk to `max_side` if larger, and a
    note saying so ("" if not). Decoded as in training (`images.read_image`); a file that is not
    an image raises `ImageError` naming it."""
    return shrink(read_image(path, channels), max_side)


def make_examples(folder: Path, cfg, count: int = EXAMPLE_COUNT) -> list[Path]:
    """A few synthetic polyp images (seed 1: not among the images `unetkit demo` trains on),
    written as PNG at start-up so that nothing needs to be shipped or downloaded."""
    from unetkit.data.synthetic import make_sample

    folder.mkdir(parents=True, exist_ok=True)
    lesion_classes = max(1, cfg.num_classes - 1)
    paths = []
    for i in range(count):
        img, _ = make_sample(i, size=256, seed=1, num_lesion_classes=lesion_classes)
        path = folder / f"example_{i + 1}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


class ModelPage:
    """The served model and everything the page shows about it; one prediction per call."""

    def __init__(self, run_dir, device: str | None = None, max_side: int = MAX_SIDE):
        self.run_dir = resolve_model_dir(run_dir)
        self.predictor = Predictor.from_run(self.run_dir, device)
        self.cfg = self.predictor.cfg
        self.card = read_model_card(self.run_dir)
        self.classes = list(self.cfg.data.classes)
        self.binary = self.cfg.num_classes == 2
        self.max_side = max_side
        self.files = WorkFolder()  # uploads, results; deleted as they are done with
        self.work, self.uploads = self.files.path, self.files.uploads
        self.examples = make_examples(self.work / "examples", self.cfg)

    def close(self) -> None:
        self.files.close()

    def describe(self) -> str:
        """Markdown: what model this is and how well it did on its validation images."""
        cfg, m = self.cfg, self.card.get("metrics") or {}
        h, w = cfg.data.image_size
        arch = cfg.model.arch if cfg.model.arch != "timm-unet" else f"U-Net on {cfg.model.encoder}"
        lines = [f"# {cfg.name}: {'binary' if self.binary else f'{cfg.num_classes}-class'} "
                 "segmentation",
                 cfg.description or "",
                 f"- **Run folder:** `{self.run_dir}`",
                 f"- **Model:** {arch}, {cfg.model.in_channels}-channel input, resized to "
                 f"{w}x{h} (width x height) for the model; masks come back at each image's size",
                 f"- **Classes:** {', '.join(self.classes)}"]
        if m.get("mDice_point") is not None:
            scores = "  ".join(f"{k.replace('_point', '@point')} {m[k]:.4f}"
                               for k in ("mDice_point", "mIoU_point", "dice", "iou",
                                         "precision", "recall") if k in m)
            lines.append(f"- **Validation** ({m.get('split', 'val')} split, epoch "
                         f"{m.get('epoch', '?')}, at the training size): {scores}")
        else:
            lines.append("- **Validation:** no scores in config.json (the run has not finished "
                         "an epoch)")
        lines.append(f"\n> {NOT_A_DEVICE}")
        return "\n".join(lines)

    def legend_html(self) -> str:
        swatches = "".join(
            f'<span style="display:inline-block;margin-right:1.2em"><span style="display:'
            f'inline-block;width:1em;height:1em;vertical-align:middle;border:1px solid #888;'
            f'background:rgb({r},{g},{b})"></span> {name}</span>'
            for name, (r, g, b) in zip(self.classes, self.predictor.palette.tolist(), strict=False))
        return f'<div id="legend"><b>Classes:</b> {swatches}</div>'

    def segment(self, path: str | Path, tta: bool = False, threshold: float | None = None,
                out_dir: Path | None = None, name: str | None = None) -> dict:
        """Predict one uploaded file. Returns the image, labels, colour mask, overlay, stats, the
        mask PNG's path (0/255 for binary, class indices otherwise, as `unetkit predict` writes
        them) and a note; raises `ImageError` (message naming the upload) for unreadable files."""
        name = name or Path(path).name
        self.files.hold(path)
        try:
            full = self.predictor.read(path)  # the network's input comes from the full upload
        except ImageError as exc:  # name the upload as the person knows it, not Gradio's temp path
            raise ImageError(str(exc).replace(str(path), name)) from None
        image, note = shrink(full, self.max_side)  # what the page shows, and the mask's size
        predictor = Predictor(self.predictor.model, self.cfg, self.predictor.device, tta=tta,
                              threshold=threshold, point=self.predictor.point)
        labels = predictor.labels(predictor.probabilities([full], [image.shape[:2]])[0])
        out_dir = out_dir or self.files.new_output_dir()
        mask_path = out_dir / f"{Path(name).stem}.png"
        save_png(mask_path, labels * 255 if self.binary else labels)
        colors = color_mask(labels, predictor.palette)
        rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
        return {"name": name, "image": rgb, "labels": labels, "color": colors,
                "overlay": overlay(image, labels, predictor.palette), "mask_path": mask_path,
                "stats": mask_stats(labels, self.classes), "note": note,
                "size": [int(labels.shape[0]), int(labels.shape[1])]}


    def segment_video(self, path: str | Path) -> dict:
        """A short uploaded video: its overlay video and alarms (see `video.predict_upload`),
        with the run's operating point; raises `VideoError` naming the upload if unreadable."""
        from unetkit.clinical.temporal import DEFAULT_MIN_AREA
        from unetkit.clinical.video import predict_upload

        self.files.hold(path)
        predictor = Predictor(self.predictor.model, self.cfg, self.predictor.device,
                              point=self.predictor.point, default_min_area=DEFAULT_MIN_AREA)
        summary = predict_upload(predictor, path, self.files.new_output_dir(),
                                 MAX_VIDEO_SECONDS, self.max_side)
        folder = Path(summary["folder"])
        return {"overlay": folder / "overlay.mp4", "frames_csv": folder / "frames.csv",
                "alarms": {k: summary[k] for k in ("frames", "duration_s", "alarm_count",
                                                   "alarm_total_s", "alarms", "settings")}}


def stats_markdown(results: list[dict]) -> str:
    rows = ["| image | class | area (pixels) | area (% of image) | regions |",
            "|---|---|---:|---:|---:|"]
    for res in results:
        for cls, s in res["stats"].items():
            rows.append(f"| {res['name']} | {cls} | {s['area_px']} | "
                        f"{100 * s['area_fraction']:.2f} | {s['regions']} |")
    return "\n".join(rows)
