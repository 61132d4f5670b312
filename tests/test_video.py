"""Videos: the alarm rule, the overlay video, frames.csv against image prediction, damaged files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import run_cli
from run_fixtures import make_run
from unetkit import config as config_mod
from unetkit.clinical.temporal import Smoothing, alarm_intervals, smooth_detections
from unetkit.clinical.video import is_video, predict_video
from unetkit.data.synthetic import make_sample
from unetkit.inference.detection import frame_score
from unetkit.inference.predictor import Predictor

TINY = ["model.base_channels=8", "model.depth=3", "data.image_size=[64, 64]"]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, fmt: str | None = None):
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode(None))


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in c.decode(stream)], float(stream.average_rate)


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_k_of_n_rule_and_intervals():
    detected = [0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    alarms = smooth_detections([bool(d) for d in detected], k=3, n=5)
    # the lone detection (frame 3) never alarms; the run of four starts one at its 3rd frame
    # and holds n - k = 2 frames after it
    assert alarms == [False] * 8 + [True] * 4 + [False] * 2
    assert smooth_detections([bool(d) for d in detected], 1, 1) == [bool(d) for d in detected]
    (iv,) = alarm_intervals(alarms, [i / 10 for i in range(14)], 0.1)
    assert (iv["start_frame"], iv["end_frame"], iv["frames"]) == (9, 12, 4)
    assert iv["start_s"] == pytest.approx(0.8) and iv["duration_s"] == pytest.approx(0.4)
    with pytest.raises(config_mod.ConfigError):
        Smoothing(k=4, n=3).validate()


class RedIsPolyp(torch.nn.Module):
    """A stand-in model with a known answer: red pixels are polyp (on normalised inputs)."""

    def forward(self, x):
        return 40 * (x[:, :1] - x[:, 1:2]) - 10


def test_smoothing_removes_a_one_frame_false_alarm_and_keeps_a_persistent_one(tmp_path):
    """Grey frames; a red square on frame 5 alone (a false alarm) and on frames 12-21 (a polyp
    seen for a second). Without smoothing both alarm; with 3 of 5 only the persistent one does,
    and the overlay video shows the red "POLYP" flag on exactly the alarm frames."""
    frames = []
    for i in range(30):
        f = np.full((96, 128, 3), 120, np.uint8)
        if i == 4 or 11 <= i <= 20:
            f[30:70, 40:90] = (220, 30, 30)
        frames.append(f)
    video = tmp_path / "case.mp4"
    write_video(video, frames, fps=10)
    cfg = config_mod.load(None, None, TINY)
    cfg.data.mean, cfg.data.std = [0.5] * 3, [0.25] * 3
    predictor = Predictor(RedIsPolyp(), cfg)
    raw = predict_video(predictor, str(video), tmp_path / "raw", Smoothing(1, 1), progress=False)
    assert [(a["start_frame"], a["end_frame"]) for a in raw["alarms"]] == [(5, 5), (12, 21)]
    s = predict_video(predictor, str(video), tmp_path / "smooth", Smoothing(3, 5),
                      progress=False)
    assert [(a["start_frame"], a["end_frame"]) for a in s["alarms"]] == [(14, 23)]
    assert s["alarm_count"] == 1 and s["alarms"][0]["duration_s"] == pytest.approx(1.0)
    assert s["frames_detected_raw"] == 11 and s["settings"]["k"] == 3
    rows = read_rows(tmp_path / "smooth" / "case" / "frames.csv")
    expected = [int(i == 4 or 11 <= i <= 20) for i in range(30)]
    assert [int(r["detected_raw"]) for r in rows] == expected
    box = [int(rows[12][f"foreground_{c}_raw"]) for c in ("x0", "y0", "x1", "y1")]
    # the square, within the blur of predicting at 64x64 and scaling back up to 96x128
    assert np.abs(np.subtract(box, [40, 30, 89, 69])).max() <= 3
    overlay, _ = decode(tmp_path / "smooth" / "case" / "overlay.mp4")
    corner = [f[4:6, -8:-6].reshape(-1, 3).mean(0) for f in overlay]  # inside the flag's box
    flag = [bool(c[0] > 180 and c[1] < 80) for c in corner]
    assert flag == [13 <= i <= 22 for i in range(30)]


def test_a_failing_stage_ends_the_run_with_an_error_and_keeps_the_frames_done(tmp_path):
    """An unexpected error while preparing frame 6 (on the decoding thread): no stage waits
    forever, the 5 frames read before it are finished and kept in frames.csv, and the error
    names the video and the cause."""
    import threading

    from unetkit.io.video import VideoError

    write_video(tmp_path / "v.mp4", [np.full((48, 64, 3), 90, np.uint8)] * 12)
    cfg = config_mod.load(None, None, TINY)
    cfg.data.mean, cfg.data.std = [0.5] * 3, [0.25] * 3
    # a slow network: frames read before the failure are still waiting for it when it comes
    predictor, calls = Predictor(SlowOnSomeFrames(), cfg), []
    real = predictor.inputs

    def failing(images):
        calls.append(1)
        if len(calls) == 6:
            raise MemoryError("out of memory")
        return real(images)

    predictor.inputs = failing
    result = {}

    def run():
        try:
            predict_video(predictor, str(tmp_path / "v.mp4"), tmp_path / "out", Smoothing(),
                          progress=False)
        except VideoError as exc:
            result["error"] = str(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "a stage was left waiting"
    assert "v.mp4: MemoryError: out of memory" in result["error"]
    assert "5 frames" in result["error"]
    assert len(read_rows(tmp_path / "out" / "v" / "frames.csv")) == 5


class SlowOnSomeFrames(RedIsPolyp):
    """RedIsPolyp that takes 60 ms on every third call: with frames in the network at once,
    later frames finish before earlier ones."""

    def __init__(self):
        super().__init__()
        import threading

        self.calls, self.lock = 0, threading.Lock()

    def forward(self, x):
        import time

        with self.lock:
            self.calls += 1
            slow = self.calls % 3 == 1
        if slow:
            time.sleep(0.06)
        return super().forward(x)


def test_frames_in_the_network_at_once_come_out_in_the_frames_order(tmp_path):
    """Three frames in the network at once, finishing out of order: frames.csv, the alarms and
    the overlay video are those of one frame at a time."""
    frames = []
    for i in range(18):
        f = np.full((64, 80, 3), 120, np.uint8)
        if i % 4:  # a red square whose size changes with the frame, so rows differ
            f[10:20 + 2 * i, 10:30 + i] = (220, 30, 30)
        frames.append(f)
    write_video(tmp_path / "v.mp4", frames, fps=10)
    cfg = config_mod.load(None, None, TINY)
    cfg.data.mean, cfg.data.std = [0.5] * 3, [0.25] * 3
    outputs = {}
    for workers in (1, 3):
        model = SlowOnSomeFrames()
        s = predict_video(Predictor(model, cfg), str(tmp_path / "v.mp4"),
                          tmp_path / f"w{workers}", Smoothing(2, 3), progress=False,
                          workers=workers)
        assert s["frames"] == 18 and s["settings"]["inference_workers"] == workers
        outputs[workers] = (s["alarms"], read_rows(tmp_path / f"w{workers}" / "v" / "frames.csv"),
                            decode(tmp_path / f"w{workers}" / "v" / "overlay.mp4")[0])
    (alarms1, rows1, video1), (alarms3, rows3, video3) = outputs[1], outputs[3]
    assert [float(r["foreground_area_raw"]) for r in rows1] == \
        [float(r["foreground_area_raw"]) for r in rows3]
    assert len({r["foreground_area_raw"] for r in rows1}) > 10  # the rows do tell frames apart
    assert rows1 == rows3 and alarms1 == alarms3
    # H.264 is lossy and its threads need not give the same bytes twice: frames match to within
    # its rounding (a frame out of place differs by a whole square of red)
    assert all(np.abs(a.astype(int) - b).mean() < 2 for a, b in zip(video1, video3, strict=True))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run and a 24-frame synthetic clip (polyp frames with 4 polyp-free frames between)."""
    d = tmp_path_factory.mktemp("clip")
    frames = []
    for i in range(24):
        img, mask = make_sample(i % 6, size=96, seed=3)
        if 10 <= i < 14:  # polyp-free: a lesion-free corner of the frame, tiled
            assert not mask[:24, :24].any()
            img = np.tile(img[:24, :24], (4, 4, 1))
        frames.append(img[:80])  # 80x96: width and height differ
    write_video(d / "clip.mp4", frames, fps=12)
    return make_run(d / "run", TINY), d / "clip.mp4"


@pytest.mark.slow
def test_predict_video_end_to_end_matches_image_prediction(clip, tmp_path):
    run, video = clip
    out = tmp_path / "out"
    proc = run_cli("predict", str(run), str(video), "--out", str(out), "--masks", "--quiet",
                   "--min-area", "0.01")
    assert "24 frames" in proc.stdout
    folder = out / "clip"
    overlay, fps = decode(folder / "overlay.mp4")
    assert len(overlay) == 24 and overlay[0].shape == (80, 96, 3) and fps == 12
    # the same decoded frames, predicted one by one as images
    frames, _ = decode(video)
    predictor = Predictor.from_run(run, min_area=0.01)  # the operating point the video used
    rows = read_rows(folder / "frames.csv")
    assert len(rows) == 24
    for i, (frame, row) in enumerate(zip(frames, rows, strict=True)):
        probs = predictor.probabilities([frame])[0]
        labels = predictor.labels(probs)
        area = labels.mean()
        assert int(row["frame"]) == i + 1
        assert float(row["time_s"]) == pytest.approx(i / 12, abs=1e-4)
        assert float(row["foreground_area_raw"]) == pytest.approx(area, abs=1e-6)
        assert int(row["detected_raw"]) == int(area > 0.01)
        assert float(row["score_raw"]) == pytest.approx(frame_score(probs), abs=1e-4)
        mask = np.asarray(__import__("PIL.Image").Image.open(folder / "masks" / f"{i + 1:06d}.png"))
        assert np.array_equal(mask > 0, labels > 0)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["frames"] == 24 and summary["complete"] and summary["fps_achieved"] > 0
    assert summary["frames_in_alarm"] == sum(int(r["alarm"]) for r in rows)
    assert summary["settings"]["min_area"] == 0.01 and summary["settings"]["backend"] == "torch"


@pytest.mark.slow
def test_onnx_video_runs_a_frame_per_core_and_matches_pytorch(clip, tmp_path):
    """The ONNX model (the video path's default once exported) runs one frame per core, each on
    one thread; its frames.csv is PyTorch's, to float32 rounding."""
    import os

    pytest.importorskip("onnxruntime")
    from unetkit.deploy.export import export_onnx

    run, video = clip
    onnx_run = tmp_path / "run"
    __import__("shutil").copytree(run, onnx_run)
    export_onnx(onnx_run, onnx_run / "model.onnx")
    for backend in ("torch", "onnx"):
        run_cli("predict", str(onnx_run), str(video), "--out", str(tmp_path / backend), "--quiet",
                "--no-video", "--backend", backend)
    summary = json.loads((tmp_path / "onnx" / "clip" / "summary.json").read_text())
    assert summary["settings"]["backend"] == "onnx"
    assert summary["settings"]["inference_workers"] == len(os.sched_getaffinity(0))
    rows = {b: read_rows(tmp_path / b / "clip" / "frames.csv") for b in ("torch", "onnx")}
    assert len(rows["onnx"]) == 24
    for a, b in zip(rows["torch"], rows["onnx"], strict=True):
        assert a["frame"] == b["frame"]
        assert float(a["score_raw"]) == pytest.approx(float(b["score_raw"]), abs=1e-3)
        assert float(a["foreground_area_raw"]) == pytest.approx(float(b["foreground_area_raw"]),
                                                                abs=2e-3)


def test_capture_device_and_csv_only(clip, tmp_path):
    """A capture device (FFmpeg's virtual lavfi device) is read like a file; --no-video."""
    run, _ = clip
    source = "lavfi:testsrc=size=64x48:rate=10"
    assert is_video(source) and is_video("rtsp://camera/live") and not is_video("a.png")
    run_cli("predict", str(run), source, "--out", str(tmp_path), "--no-video", "--quiet",
            "--max-frames", "7")
    folder = tmp_path / "testsrc_size_64x48_rate_10"
    assert len(read_rows(folder / "frames.csv")) == 7 and not (folder / "overlay.mp4").exists()


@pytest.mark.slow
def test_damaged_videos_give_a_clear_error_and_keep_what_was_read(clip, tmp_path):
    run, video = clip
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    proc = run_cli("predict", str(run), str(junk), "--out", str(tmp_path / "o"), "--quiet",
                   check=False)
    assert proc.returncode == 2 and "junk.mp4" in proc.stderr and "Traceback" not in proc.stderr
    # Matroska declares its duration up front: a file cut in half is found out part-way
    frames, _ = decode(video)
    mkv = tmp_path / "cut.mkv"
    write_video(mkv, frames * 4, fps=12, fmt="matroska")
    data = mkv.read_bytes()
    mkv.write_bytes(data[: len(data) // 2])
    proc = run_cli("predict", str(run), str(mkv), "--out", str(tmp_path / "o"), "--quiet",
                   check=False)
    assert proc.returncode == 2 and "cut.mkv" in proc.stderr and "truncated" in proc.stderr
    folder = tmp_path / "o" / "cut"
    summary = json.loads((folder / "summary.json").read_text())
    assert not summary["complete"] and "truncated" in summary["error"]
    read = len(read_rows(folder / "frames.csv"))
    assert 0 < read < 96 and summary["frames"] == read
    assert len(decode(folder / "overlay.mp4")[0]) == read


def test_serve_page_takes_a_short_video_and_refuses_a_long_one(clip, tmp_path):
    """The web page's video path (Gradio-free part): overlay video and alarm list back; an
    upload over the duration limit is refused with a message naming it."""
    from unetkit.clinical.video import predict_upload
    from unetkit.deploy.page import ModelPage
    from unetkit.io.video import VideoError

    run, video = clip
    page = ModelPage(run, "cpu")
    try:
        res = page.segment_video(video)
        assert len(decode(res["overlay"])[0]) == 24
        assert res["alarms"]["frames"] == 24 and isinstance(res["alarms"]["alarms"], list)
        with pytest.raises(VideoError, match="clip.mp4.*up to 1 s"):
            predict_upload(page.predictor, video, tmp_path, max_seconds=1, max_side=2048)
    finally:
        page.close()
