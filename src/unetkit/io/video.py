"""Reading videos, streams and capture devices with PyAV; drawing and writing the outputs.

PyAV (`pip install 'unetkit[video]'`) is imported only here, when a video is opened.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unetkit.core.extras import require
from unetkit.io import budget
from unetkit.io.budget import ImageError
from unetkit.io.plots import outline, save_png

# FFmpeg input formats of capture devices, given as FORMAT:DEVICE (e.g. v4l2:/dev/video0);
# lavfi is FFmpeg's virtual device (lavfi:testsrc=size=720x576:rate=25).
DEVICE_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow", "gdigrab", "x11grab", "lavfi")
STREAM_TIMEOUT_S = 10  # a stream that sends nothing for this long is an error, not a hang
FALLBACK_FPS = 25.0  # when a stream declares no frame rate (the common rate of endoscopes)
ALARM_RED = (230, 20, 20)


class VideoError(ImageError):
    """A video, stream or device that cannot be read; the message names it and says why."""


def _av():
    return require("av", "video", "reading videos")


def open_source(source: str):
    """(container, video stream, frames per second) of a file, URL or FORMAT:DEVICE."""
    av = _av()
    fmt, path = None, source
    head, _, rest = source.partition(":")
    if head in DEVICE_FORMATS and rest:
        fmt, path = head, rest
    elif "://" not in source and not Path(source).exists():
        raise FileNotFoundError(f"{source}: no such video file")
    try:
        container = av.open(path, format=fmt, timeout=STREAM_TIMEOUT_S)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{source}: cannot be opened as a video ({exc}); check that the file "
                         "is a complete video (or the URL/device is reachable)") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{source}: has no video stream")
    stream = container.streams.video[0]
    try:
        check_frame_size(source, stream.width, stream.height)  # from the header: nothing decoded
    except VideoError:
        container.close()
        raise
    stream.thread_type = "AUTO"  # FFmpeg's own decoding threads
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate and float(rate) > 0 else FALLBACK_FPS
    return container, stream, fps


def check_frame_size(source: str, width: int, height: int) -> None:
    """Frames are held to the images' pixel budget (`io.budget.MAX_IMAGE_PIXELS`)."""
    if (width or 0) * (height or 0) > budget.MAX_IMAGE_PIXELS:
        raise VideoError(f"{source}: frames of {width}x{height} pixels, over the budget of "
                         f"{budget.MAX_IMAGE_PIXELS:,} pixels a frame; scale the video down "
                         "first (e.g. ffmpeg -i IN -vf scale=1920:-2 OUT)")


def source_frames(container, stream, channels: int, max_frames: int | None = None
                  ) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, time in seconds from the first frame, (H, W, channels) uint8) per decoded frame.
    A damaged stream raises VideoError; a file that ends before its declared duration too."""
    av = _av()
    fmt = "rgb24" if channels == 3 else "gray"
    first, index, last_t = None, 0, 0.0
    try:
        for frame in container.decode(stream):
            if max_frames is not None and index >= max_frames:
                return
            check_frame_size(container.name, frame.width, frame.height)  # a size that changes
            t = float(frame.time) if frame.time is not None else index / FALLBACK_FPS
            first = t if first is None else first
            last_t = t - first
            arr = frame.to_ndarray(format=fmt)
            yield index, last_t, arr if arr.ndim == 3 else arr[..., None]
            index += 1
    except av.FFmpegError as exc:
        raise VideoError(f"{container.name}: damaged after frame {index} ({exc})") from None
    declared = float(container.duration / av.time_base) if container.duration else None
    rate = float(stream.average_rate or FALLBACK_FPS)
    if index == 0:
        raise VideoError(f"{container.name}: no frame could be decoded (empty or damaged file)")
    if declared and max_frames is None and last_t + 1 / rate < declared - max(1.0, 3 / rate):
        raise VideoError(f"{container.name}: ends at {last_t:.2f} s of its declared "
                         f"{declared:.2f} s (truncated or damaged)")


def _font(height: int):
    try:
        return ImageFont.load_default(size=max(12, height // 28))
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_frame(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, classes: list[str],
               index: int, t: float, alarm: bool, style: str, font) -> Image.Image:
    """The overlay of one frame: outline or tint, class legend, frame number, alarm flag."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image.copy()
    if style == "tint":
        fg = labels > 0
        rgb[fg] = (rgb[fg].astype(np.uint16) + palette[labels[fg]]) // 2
    else:
        edge = outline(labels)
        rgb[edge] = palette[np.maximum(labels[edge], 1)]  # outside of a border: its class colour
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    size = font.size if hasattr(font, "size") else 12
    x = 6
    # the legend: one swatch per class
    for name, color in zip(classes[1:], palette[1:].tolist(), strict=False):
        draw.rectangle((x, 6, x + size, 6 + size), fill=tuple(color), outline=(255, 255, 255))
        draw.text((x + size + 4, 6), name, fill=(255, 255, 255), font=font, stroke_width=1,
                  stroke_fill=(0, 0, 0))
        x += size + 12 + int(draw.textlength(name, font=font))
    draw.text((6, img.height - size - 8), f"frame {index}  {t:.2f} s", fill=(255, 255, 255),
              font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    if alarm:
        w = int(draw.textlength("POLYP", font=font)) + 16
        draw.rectangle((img.width - w - 6, 4, img.width - 6, size + 14), fill=ALARM_RED)
        draw.text((img.width - w + 2, 8), "POLYP", fill=(255, 255, 255), font=font)
    return img


class FrameWriter:
    """Writes overlay.mp4, frames.csv and masks/ of one video; files appear under their final
    names only when closed (until then: *.partial), so an interrupted run never leaves a
    half-written file in place of an earlier complete one."""

    def __init__(self, folder: Path, fps: float, classes: list[str], header: list[str],
                 palette: np.ndarray, video: bool, masks: bool, style: str, binary: bool):
        self.folder, self.fps, self.classes, self.palette = folder, fps, classes, palette
        self.style, self.binary, self.masks = style, binary, masks
        self.csv_path = folder / "frames.csv.partial"
        self.csv_file = self.csv_path.open("w", newline="")
        self.csv = csv.writer(self.csv_file)
        self.csv.writerow(header)
        self.video_path = folder / "overlay.mp4.partial" if video else None
        self.container = self.stream = self.font = None
        if masks:
            (folder / "masks").mkdir(exist_ok=True)

    def _open_video(self, height: int, width: int) -> None:
        av = _av()
        self.container = av.open(str(self.video_path), "w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        rate = Fraction(self.fps).limit_denominator(1001)
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":  # fast enough for real time on a CPU, still a clear picture
            self.stream.options = {"preset": "veryfast", "crf": "23"}
        self.stream.thread_type = "AUTO"
        self.font = _font(height)

    def write(self, image: np.ndarray, labels: np.ndarray, alarm: bool, row: list) -> None:
        """One frame: its frames.csv row (frame, time first), its mask and its overlay."""
        self.csv.writerow(row)
        index, t = row[0], row[1]
        if self.masks:
            save_png(self.folder / "masks" / f"{index:06d}.png",
                     labels * 255 if self.binary else labels)
        if self.video_path is None:
            return
        h, w = image.shape[:2]
        if self.container is None:
            self._open_video(h - h % 2, w - w % 2)  # 4:2:0 video needs even sizes
        img = draw_frame(image[: h - h % 2, : w - w % 2], labels[: h - h % 2, : w - w % 2],
                         self.palette, self.classes, index, t, alarm, self.style, self.font)
        frame = _av().VideoFrame.from_image(img)
        self.container.mux(self.stream.encode(frame))

    def outputs(self) -> list[str]:
        names = ["frames.csv", "summary.json"] + (["overlay.mp4"] if self.video_path else [])
        return names + (["masks/"] if self.masks else [])

    def close(self) -> None:
        self.csv_file.close()
        os.replace(self.csv_path, self.folder / "frames.csv")
        if self.container is not None:
            self.container.mux(self.stream.encode(None))  # flush the encoder's delayed frames
            self.container.close()
            os.replace(self.video_path, self.folder / "overlay.mp4")

    def abort(self) -> None:
        self.csv_file.close()
        if self.container is not None:
            self.container.close()
