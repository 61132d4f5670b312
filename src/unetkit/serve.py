"""`unetkit serve`: a web page (Gradio) for trying a trained model on one's own images.

The page shows what model it serves (recipe, classes, input size, validation scores from the run
folder), takes one or several uploads or a built-in synthetic example, and shows the input, the
predicted mask and a colour overlay side by side, with the predicted area and the number of
separate regions per class, and the masks as PNG files to download. The same app answers
Gradio's programmatic API (`gradio_client`), endpoint `/segment`: one image in, its mask PNG and
the numbers out.

Gradio is an optional extra (`pip install 'unetkit[serve]'`): only `build_app` and `serve` import
it, so the rest of this module (upload reading, region counting) works and is tested without it.
"""

from __future__ import annotations

import atexit
import os
import signal
from pathlib import Path

import numpy as np
from PIL import Image

from .images import ImageError, read_image, resize_image
from .plots import color_mask, overlay, save_png
from .predict import Predictor
from .runs import read_model_card, resolve_model_dir
from .summary import summarize
from .workdir import WorkFolder

# The mask of an upload is made at most this large (longer side): the network's input comes from
# the full upload, through the run's preprocessing as in `unetkit predict`, but the class
# probabilities are computed at the output's size, so a 50-megapixel photo would otherwise cost
# gigabytes. Areas are then in pixels of the shrunk image.
MAX_SIDE = 2048
MAX_FILES = 16  # images per request; more are not read (the page says so)
QUEUE_SIZE = 16  # requests waiting at once; further ones are refused with "queue full"
MAX_UPLOAD = "50mb"  # Gradio refuses bigger files before they reach unetkit
KEEP_SECONDS = 600  # results offered for download (Gradio's copies) are deleted after 10 min
EXAMPLE_COUNT = 3
NOT_A_DEVICE = ("**Not a medical device.** This page shows a research model's output for "
                "inspection only; it must not be used for diagnosis or treatment decisions.")


# ---------------------------------------------------------------- gradio-free parts

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
    from .synthetic import make_sample

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
        if m.get("mDice") is not None:
            scores = "  ".join(f"{k} {m[k]:.4f}" for k in ("mDice", "mIoU", "dice", "iou",
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
        from .temporal import DEFAULT_MIN_AREA
        from .video import predict_upload

        self.files.hold(path)
        predictor = Predictor(self.predictor.model, self.cfg, self.predictor.device,
                              point=self.predictor.point, default_min_area=DEFAULT_MIN_AREA)
        summary = predict_upload(predictor, path, self.files.new_output_dir())
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


# ---------------------------------------------------------------- the Gradio app

class MissingExtra(ImportError):
    """Gradio is not installed; the message says how to install it."""


def import_gradio():
    # Gradio reads this when it is imported: no usage reports sent from a model's page.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise MissingExtra("`unetkit serve` needs Gradio, an optional extra: "
                          "pip install 'unetkit[serve]'") from None
    return gr


def build_app(page: ModelPage):
    """The Gradio Blocks app for a ModelPage (queue not yet configured; see `serve`)."""
    gr = import_gradio()
    default_threshold = page.predictor.threshold  # the run's operating point, if calibrated

    def segment_uploads(files, tta, threshold):
        files = [f for f in (files or []) if f]
        if not files:
            return [], "", None, "Upload one or several images, or pick an example."
        messages = []
        if len(files) > MAX_FILES:
            messages.append(f"Only the first {MAX_FILES} of {len(files)} files were read; "
                            "send the rest in another request.")
            files = files[:MAX_FILES]
        out_dir = page.files.new_output_dir()
        results = []
        for f in files:
            path = Path(f if isinstance(f, str) else f.name)
            try:
                results.append(page.segment(path, tta, threshold, out_dir))
            except ImageError as exc:  # the message starts with the file's name; say it once
                reason = str(exc).removeprefix(f"{path.name}: ")
                messages.append(f"**{path.name}** was skipped, it is not an image unetkit can "
                                f"read: {reason}")
            finally:
                page.files.forget(path)
        for res in results:
            if res["note"]:
                messages.append(f"{res['name']}: {res['note']}.")
        gallery = []
        for res in results:
            gallery += [(res["image"], f"{res['name']}: input"),
                        (res["color"], f"{res['name']}: mask"),
                        (res["overlay"], f"{res['name']}: overlay")]
        status = "\n\n".join(messages) if messages else (
            f"Segmented {len(results)} image{'s' * (len(results) != 1)}"
            f"{' with flip TTA' if tta else ''}"
            f"{f', threshold {threshold:.2f}' if page.binary else ''}.")
        masks = [str(r["mask_path"]) for r in results] or None
        return gallery, stats_markdown(results) if results else "", masks, status

    def segment_api(file, tta, threshold):
        """One image in; its mask PNG (0/255 for binary models, class indices otherwise) and a
        JSON object with the image size and, per class, area and region count, out."""
        if not file:
            raise gr.Error("send an image file")
        path = Path(file if isinstance(file, str) else file.name)
        try:
            res = page.segment(path, bool(tta), float(threshold) if page.binary else None)
        except ImageError as exc:
            raise gr.Error(str(exc)) from None
        finally:
            page.files.forget(path)
        info = {"image": res["name"], "size": res["size"], "classes": page.classes,
                "note": res["note"], "stats": res["stats"]}
        return str(res["mask_path"]), info

    # Gradio's cache (uploads, and results it serves) lives in the page's folder; copies older
    # than KEEP_SECONDS are deleted every minute, and the folder itself at exit.
    os.environ["GRADIO_TEMP_DIR"] = str(page.uploads)
    with gr.Blocks(title=f"unetkit: {page.cfg.name}", analytics_enabled=False,
                   delete_cache=(60, KEEP_SECONDS)) as app:
        gr.Markdown(page.describe(), elem_id="model-card")
        with gr.Row():
            with gr.Column(scale=1):
                uploads = gr.File(label="Images (one or several)", file_count="multiple",
                                  elem_id="uploads")
                gr.Examples([[[str(p)]] for p in page.examples], inputs=[uploads],
                            label="Or try a synthetic example",
                            example_labels=[p.stem.replace("_", " ") for p in page.examples])
            with gr.Column(scale=1):
                tta = gr.Checkbox(label="Flip test-time augmentation (4 passes, slower)",
                                  value=False, elem_id="tta")
                threshold = gr.Slider(0.05, 0.95, value=default_threshold, step=0.05,
                                      label="Foreground probability threshold",
                                      visible=page.binary, elem_id="threshold")
                run = gr.Button("Segment", variant="primary", elem_id="run")
                gr.HTML(page.legend_html())
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(label="Input | mask | overlay", columns=3, object_fit="contain",
                             height="auto", elem_id="results")
        stats = gr.Markdown(elem_id="stats")
        masks = gr.File(label="Masks (PNG, as unetkit predict writes them)",
                        file_count="multiple", elem_id="masks")

        outputs = [gallery, stats, masks, status]
        inputs = [uploads, tta, threshold]
        # One model, one queue: every event shares the concurrency group "model".
        common = dict(fn=segment_uploads, inputs=inputs, outputs=outputs,
                      concurrency_id="model", api_visibility="private")
        run.click(**common)
        uploads.change(**common)  # an upload, a cleared box, or a click on an example
        tta.change(**common)
        threshold.release(**common)

        with gr.Accordion("Video (up to a minute): overlay and alarms", open=False):
            video_in = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
            video_run = gr.Button("Predict the video", elem_id="video-run")
            video_out = gr.Video(label="Overlay", elem_id="video-out")
            alarms = gr.JSON(label="Alarms", elem_id="alarms")

        def video_api(path):
            """One video in; its overlay video (MP4) and the alarms (JSON) out."""
            if not path:
                raise gr.Error("send a video file")
            try:
                res = page.segment_video(path)
            except ImageError as exc:  # VideoError included
                raise gr.Error(str(exc)) from None
            finally:
                page.files.forget(Path(path))
            return str(res["overlay"]), res["alarms"]

        video_run.click(video_api, [video_in], [video_out, alarms], api_name="video",
                        concurrency_id="model")

        # The programmatic API: hidden components, so the endpoint has typed parameters.
        with gr.Row(visible=False):
            api_file = gr.File(label="image")
            api_tta = gr.Checkbox(label="tta", value=False)
            api_threshold = gr.Slider(0, 1, value=default_threshold, label="threshold")
            api_mask = gr.File(label="mask")
            api_info = gr.JSON(label="stats")
            api_button = gr.Button("segment")
        api_button.click(segment_api, [api_file, api_tta, api_threshold], [api_mask, api_info],
                         api_name="segment", concurrency_id="model")
    return app


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def serve(run_dir, host: str = "127.0.0.1", port: int | None = None, device: str | None = None,
          log=print) -> None:
    """Serve a run folder's model until interrupted. Listens on 127.0.0.1 unless told otherwise."""
    import_gradio()
    page = ModelPage(run_dir, device)
    atexit.register(page.close)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # like Ctrl+C: unwind, so `finally` cleans up
        signal.signal(sig, _raise_interrupt)
    try:
        app = build_app(page)
        # A bounded queue: when QUEUE_SIZE requests wait, the next is refused at once instead of
        # piling up memory; one prediction runs at a time (the model uses all CPU cores itself).
        app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
        log(f"serving {page.run_dir} ({page.cfg.name}); press Ctrl+C to stop")
        app.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD,
                   allowed_paths=[str(page.work)], show_error=True, quiet=False,
                   footer_links=["api"])
    finally:
        page.close()
