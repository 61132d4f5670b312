"""Video and live streams: per-frame prediction, temporal smoothing, an overlay video, alarms.

`predict_video` reads any container and codec FFmpeg reads (through PyAV, whose wheels ship
FFmpeg), a stream URL (rtsp://, http://, udp://, ...) or a capture device (`v4l2:/dev/video0`,
`avfoundation:0`, `dshow:video=NAME`, or FFmpeg's virtual `lavfi:testsrc`), and writes, in
OUT/<video name>/:
  overlay.mp4    the video with the predicted outline (or tint), the class legend, the frame
                 number and time, and a red "POLYP" flag on every frame where an alarm is raised
  frames.csv     per frame: time, raw and smoothed detection, alarm, score, area and box per class
  summary.json   alarms as time intervals, their count and durations, frames/s achieved, settings
  masks/         one mask PNG per frame, only when asked
Decoding + preprocessing, inference, and the alarm rule + drawing + encoding run in their own
threads joined by bounded queues, so on a CPU they overlap (FFmpeg, NumPy and the inference
runtimes release the GIL while they work) and the network never waits for the rest. With ONNX
Runtime, the inference stage runs one frame per core at once, each on one thread: a small
network's layers are too short to share out over cores well (`inference_workers`).
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from unetkit.clinical.temporal import (
    DEFAULT_MIN_AREA,
    AlarmRule,
    MovingAverage,
    Smoothing,
    alarm_intervals,
)
from unetkit.config.schema import ConfigError
from unetkit.core.extras import installed
from unetkit.core.files import write_text
from unetkit.core.text import plural
from unetkit.inference.detection import frame_score, is_detected
from unetkit.inference.predictor import ONNX_FILES, Predictor, parallel_predictor
from unetkit.inference.summary import class_stats
from unetkit.io.video import STREAM_TIMEOUT_S, FrameWriter, VideoError, open_source, source_frames

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts",
                  ".mts", ".wmv", ".flv", ".ogv", ".3gp", ".mxf", ".y4m"}
QUEUE_FRAMES = 8  # frames waiting between two stages: bounds memory, lets stages overlap


def is_video(name: str) -> bool:
    """A video file (by suffix), a stream URL or a capture device (`FORMAT:DEVICE`)."""
    from unetkit.io.video import DEVICE_FORMATS

    return (Path(name).suffix.lower() in VIDEO_SUFFIXES or "://" in name
            or name.split(":", 1)[0] in DEVICE_FORMATS)


def video_name(source: str) -> str:
    """A folder name for a video, URL or device: its file stem, made safe."""
    from unetkit.io.video import DEVICE_FORMATS

    head, _, rest = source.partition(":")
    source = rest if head in DEVICE_FORMATS and rest else source  # v4l2:/dev/video0 -> video0
    stem = Path(source.split("?", 1)[0].rstrip("/")).stem or "stream"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".") or "stream"


def stats_columns(labels: np.ndarray, classes: list[str]) -> list:
    """frames.csv's columns of one mask, per foreground class: area fraction, x0, y0, x1, y1
    (the box empty when the class is absent)."""
    row = []
    for c in class_stats(labels, classes, components=False).values():
        row += [c["area_fraction"], *(c["bbox_xyxy"] or ("", "", "", ""))]
    return row


def csv_header(classes: list[str]) -> list[str]:
    cols = ["frame", "time_s", "detected_raw", "detected", "alarm", "score_raw", "score"]
    for cls in classes[1:]:
        for sfx in ("_raw", ""):
            cols += [f"{cls}_area{sfx}", *(f"{cls}_{c}{sfx}" for c in ("x0", "y0", "x1", "y1"))]
    return cols


class _Stage(threading.Thread):
    """A daemon thread that remembers the exception it died of and then tells the others to
    stop (through `stop`), so that no stage waits forever on a queue nobody serves."""

    def __init__(self, target, stop: threading.Event):
        super().__init__(daemon=True)
        self._work, self._stop_all, self.error = target, stop, None

    def run(self):
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
            self.error = exc
            self._stop_all.set()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless told to stop (a bounded queue whose consumer is gone would block forever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


def _get(q: queue.Queue, stop: threading.Event):
    """The next item, or None once told to stop (its producer may be gone)."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return None


def predict_video(predictor: Predictor, source: str, out_dir, smoothing: Smoothing,
                  overlay_video: bool = True,
                  masks: bool = False, style: str = "outline", max_frames: int | None = None,
                  progress: bool = True, settings: dict | None = None, workers: int = 1) -> dict:
    """Predict every frame of `source`; write OUT/<name>/ (see the module docstring). Returns
    the summary. Frames are detected at the predictor's operating point (`threshold`,
    `min_area`); `workers` frames are in the network at once (`inference_workers`). A read
    error part-way keeps the outputs of the frames read (summary.json says `complete: false`
    and why) and then raises `VideoError`."""
    from tqdm.auto import tqdm

    smoothing.validate()
    check_max_frames(max_frames)
    workers = max(1, workers)
    container, stream, fps = open_source(source)
    folder = Path(out_dir) / video_name(source)
    folder.mkdir(parents=True, exist_ok=True)
    classes = list(predictor.cfg.data.classes)
    writer = FrameWriter(folder, fps, classes, csv_header(classes), predictor.palette,
                         overlay_video, masks, style, predictor.cfg.num_classes == 2)
    stop = threading.Event()
    frames_q: queue.Queue = queue.Queue(QUEUE_FRAMES)
    results_q: queue.Queue = queue.Queue(QUEUE_FRAMES)
    decode_errors: list[str] = []

    def decode():  # and prepare the network's input, off the inference thread
        try:
            for index, t, image in source_frames(container, stream, predictor.channels,
                                                 max_frames):
                if not _put(frames_q, (index, t, image, predictor.inputs([image])), stop):
                    return
        except Exception as exc:  # noqa: BLE001 (a damaged file, or no memory for a frame):
            # the stream ends there; the frames read before it are finished, then it is raised
            decode_errors.append(str(exc) if isinstance(exc, VideoError)
                                 else f"{source}: {type(exc).__name__}: {exc}")
        finally:
            _put(frames_q, None, stop)

    ema, rule = MovingAverage(smoothing.ema), AlarmRule(smoothing.k, smoothing.n)
    min_area = predictor.min_area
    times, alarms, raw_count = [], [], 0

    def write():  # the alarm rule, frames.csv, drawing and encoding, off the inference thread
        nonlocal raw_count
        while (item := _get(results_q, stop)) is not None:  # drains what is queued on a stop
            index, t, image, pending = item
            probs = pending.result()[0]  # frames are queued in order, whichever finishes first
            raw = predictor.labels(probs)
            smooth_probs = ema.update(probs)
            labels = raw if smoothing.ema == 0 else predictor.labels(smooth_probs)
            detected_raw, detected = is_detected(raw, min_area), is_detected(labels, min_area)
            alarm = rule.update(detected)
            score_raw = frame_score(probs)
            score = score_raw if smoothing.ema == 0 else frame_score(smooth_probs)
            raw_cols = stats_columns(raw, classes)
            cols = raw_cols if labels is raw else stats_columns(labels, classes)
            row = [index + 1, round(t, 4), int(detected_raw), int(detected), int(alarm),
                   round(score_raw, 4), round(score, 4)]
            for k in range(0, len(raw_cols), 5):  # per class: raw columns, then smoothed ones
                row += raw_cols[k:k + 5] + cols[k:k + 5]
            writer.write(image, labels, alarm, row)
            times.append(t)
            alarms.append(alarm)
            raw_count += detected_raw
            bar.update()

    interrupted = False
    bar = tqdm(total=stream.frames or max_frames or None, unit="frame", desc=video_name(source),
               disable=not progress)
    stages = [_Stage(decode, stop), _Stage(write, stop)]
    for s in stages:
        s.start()
    network = ThreadPoolExecutor(workers, thread_name_prefix="unetkit-network")
    start = time.perf_counter()
    try:
        while (item := _get(frames_q, stop)) is not None:
            index, t, image, batch = item
            pending = network.submit(predictor.probabilities_of, batch, [image.shape[:2]])
            if not _put(results_q, (index, t, image, pending), stop):
                break
    except KeyboardInterrupt:  # a live stream is stopped with Ctrl+C: keep what was read
        interrupted = True
    finally:
        _put(results_q, None, stop)
        stages[1].join()
        elapsed = time.perf_counter() - start
        network.shutdown(cancel_futures=True)
        bar.close()
        stop.set()
        stages[0].join(timeout=STREAM_TIMEOUT_S)  # a live stream may be waiting for a packet
        if not stages[0].is_alive():
            container.close()
    if stages[1].error:
        writer.abort()
        raise stages[1].error
    writer.close()
    errors = decode_errors + ([str(stages[0].error)] if stages[0].error else [])
    intervals = alarm_intervals(alarms, times, 1 / fps)
    summary = {
        "source": source, "frames": len(times), "input_fps": round(fps, 4),
        "duration_s": round(times[-1] + 1 / fps, 4) if times else 0.0,
        "fps_achieved": round(len(times) / elapsed, 2) if elapsed > 0 else None,
        "complete": not errors and not interrupted, "error": errors[0] if errors else None,
        "interrupted": interrupted, "frames_detected_raw": raw_count,
        "frames_in_alarm": int(sum(alarms)), "alarm_count": len(intervals),
        "alarm_total_s": round(sum(a["duration_s"] for a in intervals), 4),
        "alarms": intervals,
        "settings": {**(settings or {}), **smoothing.to_dict(), "min_area": min_area,
                     "threshold": predictor.threshold,
                     "operating_point_source": predictor.point_source, "style": style,
                     "inference_workers": workers},
        "folder": str(folder), "outputs": writer.outputs(),
    }
    write_text(folder / "summary.json", json.dumps(summary, indent=2))
    if errors:
        raise VideoError(f"{errors[0]}; the outputs of the {plural(len(times), 'frame')} read "
                         f"before it are in {folder}")
    return summary


def resolve_backend(run_dir, backend: str | None) -> str:
    """`None`/"auto": the run's int8 ONNX model if it exists (it was kept only after passing
    its Dice check), else its float ONNX model, else PyTorch; ONNX only with onnxruntime."""
    from unetkit.runs.check import resolve_model_dir

    if backend not in (None, "auto"):
        return backend
    if not installed("onnxruntime"):
        return "torch"
    run_dir = resolve_model_dir(run_dir)
    return next((b for b in ("int8", "onnx") if (run_dir / ONNX_FILES[b]).exists()), "torch")


def check_max_frames(max_frames) -> None:
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise ConfigError(f"--max-frames must be a positive whole number of frames, got "
                          f"{max_frames}; leave it out to read the whole video")


def predict_videos(run_dir, sources: list[str], out_dir, smoothing: Smoothing,
                   threshold: float | None = None, min_area: float | None = None,
                   backend: str | None = None, device: str | None = None, log=print,
                   **options) -> list[dict]:
    """`predict_video` for each source with the run's model and operating point (given values,
    else the run's calibrated point, else its training threshold and DEFAULT_MIN_AREA); the
    backend, operating point and smoothing go into each summary."""
    from unetkit.core.files import check_outputs

    smoothing.validate()
    check_max_frames(options.get("max_frames"))
    files = [Path(s) for s in sources if Path(s).exists()]
    check_outputs([(Path(out_dir) / video_name(s) / "summary.json", s) for s in sources],
                  inputs=files)
    backend = resolve_backend(run_dir, backend)
    predictor, workers = parallel_predictor(run_dir, device, backend, threshold=threshold,
                                            min_area=min_area, default_min_area=DEFAULT_MIN_AREA)
    log(f"backend {backend}" + (f" ({workers} frames at once)" if workers > 1 else "")
        + f", threshold {predictor.threshold}, min_area {predictor.min_area} "
        f"({predictor.point_source}), alarm on {smoothing.k} of {smoothing.n} frames"
        + (f", EMA {smoothing.ema}" if smoothing.ema else ""))
    return [predict_video(predictor, s, out_dir, smoothing, settings={"backend": backend},
                          workers=workers, **options) for s in sources]


def predict_upload(predictor: Predictor, path: str | Path, out_dir, max_seconds: float,
                   max_side: int) -> dict:
    """`predict_video` for a web upload, after checking its duration and frame size against the
    page's limits (see `deploy.page`)."""
    container, stream, fps = open_source(str(path))
    seconds = container.duration / 1e6 if container.duration else None  # AV_TIME_BASE: us
    side = max(stream.width, stream.height)
    container.close()
    name = Path(path).name
    if seconds is not None and seconds > max_seconds:
        raise VideoError(f"{name}: {seconds:.0f} s long; the page takes videos up to "
                         f"{max_seconds:.0f} s (use `unetkit predict` for longer ones)")
    if side > max_side:
        raise VideoError(f"{name}: frames of {stream.width}x{stream.height} pixels; the page "
                         f"takes up to {max_side} pixels a side")
    return predict_video(predictor, str(path), out_dir, Smoothing(), progress=False,
                         max_frames=int(max_seconds * fps) + 1)  # a stream with no duration
