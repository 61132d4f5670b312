"""`unetkit serve`: a web page (Gradio) for trying a trained model on one's own images.

The page shows what model it serves (recipe, classes, input size, validation scores from the run
folder), takes one or several uploads or a built-in synthetic example, and shows the input, the
predicted mask and a colour overlay side by side, with the predicted area and the number of
separate regions per class, and the masks as PNG files to download. The same app answers
Gradio's programmatic API (`gradio_client`), endpoint `/segment`: one image in, its mask PNG and
the numbers out.

Gradio is an optional extra (`pip install 'unetkit[serve]'`): only `build_app`, `start` and
`serve` import it, so the rest (upload reading, region counting) works and is tested without it.
What the page serves back and takes in is checked by `guard.PageGuard`; what it keeps, by
`workdir.WorkFolder`.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from pathlib import Path

from unetkit.core.extras import require
from unetkit.deploy.guard import PageGuard
from unetkit.deploy.page import ModelPage, stats_markdown
from unetkit.io.budget import ImageError

MAX_FILES = 16  # images per request; more are not read (the page says so)
QUEUE_SIZE = 16  # requests waiting at once; further ones are refused with "queue full"
MAX_UPLOAD = "50mb"  # Gradio refuses bigger files before they reach unetkit
KEEP_SECONDS = 600  # results offered for download (Gradio's copies) are deleted after 10 min


def import_gradio():
    # Gradio reads this when it is imported: no usage reports sent from a model's page.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return require("gradio", "serve", "`unetkit serve`")


def build_app(page: ModelPage, log=print):
    """The Gradio Blocks app for a ModelPage (queue not yet configured; see `start`)."""
    gr = import_gradio()
    default_threshold = page.predictor.threshold  # the run's operating point, if calibrated

    def refuse(name: str, exc: Exception):
        """A file the model cannot read: one line in the console, the message to the client
        (Gradio would print a traceback for it)."""
        message = str(exc).replace(str(name), Path(name).name)  # the upload's name, not our path
        log(f"refused an upload: {message}")
        return gr.Error(message, print_exception=False)

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

    def held_uploads(files) -> None:
        for f in files if isinstance(files, list) else [files]:
            if f:
                page.files.uploaded(Path(f if isinstance(f, str) else f.name))

    def segment_api(file, tta, threshold):
        """One image in; its mask PNG (0/255 for binary models, class indices otherwise) and a
        JSON object with the image size and, per class, area and region count, out."""
        if not file:
            raise gr.Error("send an image file")
        path = Path(file if isinstance(file, str) else file.name)
        try:
            res = page.segment(path, bool(tta), float(threshold) if page.binary else None)
        except ImageError as exc:
            raise refuse(path.name, exc) from None
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
        # Every upload (an identical one too, which changes nothing) holds its file until a
        # request on it is answered: an earlier answer's clean-up never removes it.
        uploads.upload(held_uploads, [uploads], None, queue=False, api_visibility="private",
                       show_progress="hidden")
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
                raise refuse(str(path), exc) from None
            finally:
                page.files.forget(Path(path))
            return str(res["overlay"]), res["alarms"]

        video_run.click(video_api, [video_in], [video_out, alarms], api_name="video",
                        concurrency_id="model")
        video_in.upload(held_uploads, [video_in], None, queue=False, api_visibility="private",
                        show_progress="hidden")

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


def bypass_proxy(host: str) -> None:
    """Requests to this machine never go through a proxy: Gradio checks at start-up that the page
    answers on its own address, with HTTP_PROXY honoured unless NO_PROXY names the host."""
    local = ["localhost", "127.0.0.1", "::1"] + ([host] if host not in ("", "0.0.0.0", "::")
                                                  else [])
    for var in ("NO_PROXY", "no_proxy"):
        have = [h.strip() for h in os.environ.get(var, "").split(",") if h.strip()]
        os.environ[var] = ",".join(have + [h for h in local if h not in have])


def start(page: ModelPage, host: str = "127.0.0.1", port: int | None = None, log=print):
    """Build the page's app and start serving it in the background; returns the Gradio Blocks
    (`app.local_url`; `app.close()` stops it)."""
    from starlette.middleware import Middleware  # comes with Gradio

    app = build_app(page, log)
    # A bounded queue: when QUEUE_SIZE requests wait, the next is refused at once instead of
    # piling up memory; one prediction runs at a time (the model uses all CPU cores itself).
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    bypass_proxy(host)
    # quiet: Gradio's own start-up lines advise `share=True` (a public tunnel), which this page
    # does not offer; run_history off: nothing of a request is kept in the browser or sent to a
    # Hub bucket. No allowed_paths: every file served back is one Gradio made, checked by
    # PageGuard.
    app.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, show_error=True,
               quiet=True, prevent_thread_lock=True, footer_links=["api"], run_history=False,
               app_kwargs={"middleware": [Middleware(PageGuard, files=page.files, log=log)]})
    return app


def say(line: str) -> None:
    print(line, flush=True)  # at once, also into a log file


def serve(run_dir, host: str = "127.0.0.1", port: int | None = None, device: str | None = None,
          log=say) -> None:
    """Serve a run folder's model until Ctrl+C, SIGTERM or SIGHUP; then say so in one line and
    delete what the page kept. Listens on 127.0.0.1 unless told otherwise."""
    import_gradio()
    page = ModelPage(run_dir, device)
    atexit.register(page.close)
    stop, signals = threading.Event(), []

    def stopping(signum, frame):
        signals.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stopping)
    app = None
    try:
        app = start(page, host, port, log)
        log(f"serving {page.run_dir} ({page.cfg.name}) at {app.local_url}; press Ctrl+C to stop")
        while not stop.wait(0.5):
            pass
    finally:
        if app is not None:
            app.close(verbose=False)
        page.close()
    log(f"stopped ({signals[0]}); the page's uploads and results are deleted")
