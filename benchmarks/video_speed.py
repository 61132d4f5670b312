"""Frames per second of `unetkit predict` on a video: PyTorch eager, ONNX Runtime float and int8.

    python benchmarks/video_speed.py [--frames 200] [--threads 2] [--size 256] [--data KVASIR_DIR]
                                     [--decoder 128,64,32,16,8] [--write]

A 256x256 (--size) U-Net on EfficientNet-Lite0 (random weights: speed does not depend on their
values; --decoder: its decoder widths, model.decoder_channels), a 720x576 H.264 video made of
Kvasir-SEG images (Kvasir-SEG's usual frame size), and the whole video path of `predict_video`:
decode, predict, smooth, frames.csv, and with the overlay video, drawing and H.264 encoding too.
Each backend runs with and without the overlay video, all in one process, one after the other,
twice (rounds interleaved so that a change in the machine's load hits every backend alike); the
better round counts. The int8 model is made by `export_int8`, calibrated on and checked against
Kvasir-SEG (with random weights its Dice check is not informative: both models score near 0).
The backends run as `unetkit predict` runs them on --threads cores: PyTorch one frame at a
time on --threads threads, ONNX Runtime --threads frames at once on one thread each
(`predict.inference_workers`). Also the network alone (median ms of a (1, 3, size, size) call on
--threads threads), and the batch image path (`unetkit predict` on the check images).
With --write the table is appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]
from latency_cpu import median_ms  # noqa: E402  (this folder's CPU latency benchmark)
from run_fixtures import make_run  # noqa: E402  (a run folder without training)
from unetkit.clinical.temporal import Smoothing  # noqa: E402
from unetkit.clinical.video import predict_video  # noqa: E402
from unetkit.deploy.export import export_onnx  # noqa: E402
from unetkit.deploy.quantize import export_int8  # noqa: E402
from unetkit.inference.onnx import OnnxModel  # noqa: E402
from unetkit.inference.predict import predict_files  # noqa: E402
from unetkit.inference.predictor import ONNX_FILES, Predictor, inference_workers  # noqa: E402
from unetkit.runs.check import run_config  # noqa: E402
from unetkit.runs.loading import load_model  # noqa: E402

MODEL = ["model.arch=timm-unet", "model.encoder=tf_efficientnet_lite0"]
BACKEND = {"PyTorch eager": "torch", "ONNX Runtime float": "onnx", "ONNX Runtime int8": "int8"}


def write_video(path: Path, images: list[Path], frames: int, fps: int = 25) -> None:
    import av

    pictures = [np.asarray(Image.open(p).convert("RGB").resize((720, 576), Image.BILINEAR))
                for p in images]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 720, 576, "yuv420p"
        for i in range(frames):  # each picture held for 5 frames, as a scope lingers
            frame = av.VideoFrame.from_ndarray(pictures[(i // 5) % len(pictures)], format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


def network_ms(model, size: int, runs: int = 30) -> float:
    with torch.no_grad():
        return median_ms(model, torch.randn(1, 3, size, size), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="the network's input side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "kvasir-seg"))
    parser.add_argument("--check-images", type=int, default=40)
    parser.add_argument("--decoder", help="decoder widths, coarsest first (model.decoder_channels)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import av
    import onnxruntime

    d = Path(tempfile.mkdtemp(prefix="video-speed-"))
    widths = f"[{args.decoder}]" if args.decoder else "null"  # null: the default widths
    run = make_run(d / "run", [*MODEL, f"data.image_size=[{args.size}, {args.size}]",
                               f"model.decoder_channels={widths}"])
    export_onnx(run, run / ONNX_FILES["onnx"])
    # The Dice check on --check-images Kvasir-SEG images (its speed is not what is measured here)
    stems = d / "check.txt"
    stems.write_text("\n".join(p.stem for p in sorted((Path(args.data) / "images").glob("*.jpg"))
                               [-args.check_images:]))
    check = export_int8(run, run / ONNX_FILES["int8"], args.data, str(stems),
                        progress=False)["check"]
    video = d / "clip.mp4"
    write_video(video, sorted((Path(args.data) / "images").glob("*.jpg"))[:20], args.frames)
    cfg = run_config(run)
    models = {"PyTorch eager": load_model(run),
              "ONNX Runtime float": OnnxModel(run / ONNX_FILES["onnx"], args.threads),
              "ONNX Runtime int8": OnnxModel(run / ONNX_FILES["int8"], args.threads)}
    # As predict_videos: ONNX Runtime runs a frame per core at once, each on one thread
    workers = {name: min(args.threads, inference_workers(BACKEND[name])) for name in models}
    predictors = {name: Predictor(OnnxModel(run / ONNX_FILES[BACKEND[name]], 1)
                                  if workers[name] > 1 else model, cfg)
                  for name, model in models.items()}
    fps = {(name, ov): 0.0 for name in models for ov in (True, False)}
    for _ in range(args.rounds):
        for name, predictor in predictors.items():
            for ov in (True, False):
                s = predict_video(predictor, str(video), d / "out", Smoothing(),
                                  overlay_video=ov, progress=False, workers=workers[name])
                fps[name, ov] = max(fps[name, ov], s["fps_achieved"])
    # The batch image path: `unetkit predict RUN IMAGES --backend B` on the check images
    pictures = [str(Path(args.data) / "images" / f"{s}.jpg") for s in stems.read_text().split()]
    ips = dict.fromkeys(models, 0.0)
    for r in range(args.rounds):
        for name in models:
            start = time.perf_counter()
            predict_files(run, pictures, d / f"images-{r}-{BACKEND[name]}",
                          backend=BACKEND[name], progress=False, log=lambda *_: None)
            ips[name] = max(ips[name], len(pictures) / (time.perf_counter() - start))
    ms = {name: network_ms(model, args.size) for name, model in models.items()}
    base = fps["PyTorch eager", True], fps["PyTorch eager", False], ips["PyTorch eager"]
    rows = [f"| {name} ({workers[name]} at once) | "
            f"{fps[name, True]:.1f} ({fps[name, True] / base[0]:.2f}x) | "
            f"{fps[name, False]:.1f} ({fps[name, False] / base[1]:.2f}x) | "
            f"{ips[name]:.1f} ({ips[name] / base[2]:.2f}x) | {ms[name]:.1f} |"
            for name in models]
    cmd = (f"python benchmarks/video_speed.py --frames {args.frames} --threads {args.threads} "
           f"--size {args.size} --rounds {args.rounds} --check-images {args.check_images}"
           + (f" --decoder {args.decoder}" if args.decoder else ""))
    text = "\n".join([
        f"\n## Video path: frames/s on a CPU ({datetime.date.today()})\n",
        f"`{cmd}`: {platform.processor() or platform.machine()}, {args.threads} cores, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, PyAV {av.__version__}"
        f". EfficientNet-Lite0 U-Net at {args.size}x{args.size} (decoder widths "
        f"{args.decoder or 'default'}, random weights), "
        f"{args.frames} frames of 720x576 H.264 (Kvasir-SEG images); decode, predict, alarm "
        "rule, frames.csv, and with the overlay: drawing and H.264 encoding. Better of "
        f"{args.rounds} interleaved rounds; ratios are to PyTorch in the same run.\n",
        "| backend | with overlay video (frames/s) | frames.csv only (frames/s) | "
        f"images (predict, {len(pictures)} Kvasir-SEG JPEGs, images/s) | "
        "network alone (ms/frame) |",
        "|---|---:|---:|---:|---:|", *rows,
        f"\nint8 check on {check['images']} Kvasir-SEG images: mDice@point float "
        f"{check['float_mDice_point']:.4f}, int8 {check['int8_mDice_point']:.4f} (random "
        "weights: not informative about accuracy)."])
    print(text)
    if args.write:
        with (REPO / "benchmarks" / "RESULTS.md").open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
