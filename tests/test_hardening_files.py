"""Hardening: videos held to the pixel budget, run-folder files read with a bound, uploads the
web page must not delete, offline pretrained weights, and smaller holes; each as a user or an
attacker would meet it, with one-line errors and no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from run_fixtures import make_run
from test_hardening import MEMORY_CAP_WHY, TINY, capped, clean_error, write_images


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run", TINY)


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# 6. Video frames are held to the pixel budget, from the stream's header.


@pytest.mark.machine(MEMORY_CAP_WHY)
def test_video_frames_over_the_pixel_budget_are_refused_from_the_header(run, tmp_path):
    # FFmpeg's virtual device makes 8192 x 8192 frames without a file; before the check they
    # were decoded (200 MB each as RGB) and the encoder failed with a traceback under a cap.
    out = tmp_path / "out"
    proc = capped("predict", str(run), "lavfi:color=size=8192x8192:rate=5:duration=2",
                  "--out", str(out), "--quiet")
    err = clean_error(proc, "8192x8192", "40,000,000", "scale")
    one_line(err)
    assert not (out / "color").exists()  # nothing written for a refused video
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == []  # no partial file, no summary: nothing at all


def test_video_budget_check_comes_before_any_frame_is_decoded(run, tmp_path, monkeypatch):
    import av

    from unetkit.io import budget

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8),
                                                      format="rgb24")))
        c.mux(s.encode(None))
    monkeypatch.setattr(budget, "MAX_IMAGE_PIXELS", 64 * 48 - 1)

    def no_decode(*args, **kwargs):
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(av.container.InputContainer, "decode", no_decode)
    res = run_cli("predict", str(run), str(path), "--out", str(tmp_path / "out"), "--quiet",
                  check=False)
    assert "64x48" in clean_error(res, "clip.mp4")
    assert not (tmp_path / "out" / "clip").exists()


# ---------------------------------------------------------------------------------------------
# 7. Run-folder files are read with a bound; FIFOs, devices and links out of the folder refused.


@pytest.mark.machine(MEMORY_CAP_WHY)
def test_config_json_linked_to_dev_urandom_is_refused_not_read(run, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.yaml", "model.safetensors"):
        (bad / name).write_bytes((run / name).read_bytes())
    (bad / "config.json").symlink_to("/dev/urandom")
    img = write_images(tmp_path / "imgs", ["a.png"])[0]
    proc = capped("predict", str(bad), str(img), "--out", str(tmp_path / "out"), mb=1200)
    one_line(clean_error(proc, "config.json"))


@pytest.mark.parametrize("name", ["config.json", "operating_point.json", "ensemble.json"])
@pytest.mark.parametrize("kind", ["fifo", "outside", "large"])
def test_run_folder_files_special_outside_or_large_are_one_line_errors(run, tmp_path, name,
                                                                       kind):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("config.yaml", "config.json", "model.safetensors"):
        (bad / f).write_bytes((run / f).read_bytes())
    target = bad / name
    target.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(target)  # opening it for reading would wait for a writer forever
    elif kind == "outside":
        secret = tmp_path / "secret.json"
        secret.write_text('{"members": ["."], "threshold": 0.5, "min_area": 0}')
        target.symlink_to(secret)
    else:
        target.write_bytes(b" " * 20_000_001)
    img = write_images(tmp_path / "imgs", ["a.png"])[0]
    res = run_cli("predict", str(bad), str(img), "--out", str(tmp_path / "out"), "--quiet",
                  check=False)
    err = one_line(clean_error(res, name))
    assert {"fifo": "not a regular file", "outside": "outside the folder",
            "large": "too large"}[kind] in err


def test_metrics_csv_and_resumed_config_yaml_are_read_with_a_bound(run, tmp_path):
    from unetkit import config as config_mod
    from unetkit.runs.folder import RunError, read_metrics_csv

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.csv").symlink_to("/dev/zero")
    with pytest.raises(RunError, match="metrics.csv: a link to /dev/zero, outside"):
        read_metrics_csv(bad / "metrics.csv")
    (bad / "config.yaml").symlink_to("/dev/zero")
    with pytest.raises(config_mod.ConfigError, match="config.yaml: a link to /dev/zero, outside"):
        config_mod.for_training(resume=bad)
    (bad / "config.yaml").unlink()
    (bad / "config.yaml").write_text("a: 1\n" * 300_000)
    with pytest.raises(config_mod.ConfigError, match="config.yaml"):
        config_mod.for_training(resume=bad)
    res = run_cli("train", "--resume", str(bad), check=False)
    one_line(clean_error(res, "config.yaml"))


# ---------------------------------------------------------------------------------------------
# 8. The web page never deletes a file that a newer upload or a request still refers to.


def gradio_upload(page, data: bytes, name: str = "polyp.png") -> Path:
    """What Gradio does with an upload: a temporary file renamed to a path made from a hash of
    its content, so an identical upload lands on the same path (replacing the file there)."""
    folder = page.uploads / "0123abcd"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = page.uploads / f".upload-{os.urandom(4).hex()}"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)
    return folder / name


@pytest.fixture
def page(run, monkeypatch):
    from unetkit.deploy import workdir
    from unetkit.deploy.page import ModelPage

    monkeypatch.setattr(workdir, "UPLOAD_GRACE_S", 0.3)
    page = ModelPage(run, "cpu")
    yield page
    page.close()


def wait_for_timers(page) -> None:
    import time

    time.sleep(0.6)
    for timer in list(page.files.doomed.values()):
        timer.join(5)


def test_web_page_keeps_a_reupload_of_the_same_image_after_the_earlier_answer(page, tmp_path):
    data = (write_images(tmp_path, ["a.png"])[0]).read_bytes()
    first = gradio_upload(page, data)
    page.files.uploaded(first)  # the page's upload event
    page.segment(first)
    second = gradio_upload(page, data)  # the same image again, within the grace period
    page.files.uploaded(second)
    assert second == first
    page.files.forget(first)  # the first request is answered
    wait_for_timers(page)  # ...and its grace period is over before the second is submitted
    assert second.exists(), "the re-upload was deleted by the earlier answer's clean-up"
    assert page.segment(second)["size"] == [40, 48]
    page.files.forget(second)
    wait_for_timers(page)
    assert not second.exists()  # once nothing holds it, it goes


def test_web_page_reference_counts_requests_and_keeps_an_upload_renamed_over_the_path(
        page, tmp_path):
    data = (write_images(tmp_path, ["a.png"])[0]).read_bytes()
    path = gradio_upload(page, data)
    page.files.hold(path)  # two requests on one file (the API: no upload event)
    page.files.hold(path)
    page.files.forget(path)
    wait_for_timers(page)
    assert path.exists(), "deleted while a request still held it"
    page.files.forget(path)
    gradio_upload(page, data)  # an API upload of the same image, for a request still queued
    wait_for_timers(page)
    assert path.exists(), "a newer upload was deleted for an older answer"
    page.files.hold(path)
    page.files.forget(path)
    wait_for_timers(page)
    assert not path.exists()
    outside = write_images(tmp_path / "mine", ["b.png"])[0]  # a file of this machine: never
    page.files.uploaded(outside)
    page.files.hold(outside)
    page.files.forget(outside)
    wait_for_timers(page)
    assert outside.exists() and not page.files.holds


# ---------------------------------------------------------------------------------------------
# 9. model.encoder_weights=imagenet without a network: one line, at once, naming the fix.


def imagenet_cfg(encoder: str = "mobilenetv3_small_050"):
    from unetkit import config as config_mod

    return config_mod.from_dict({"model": {"arch": "timm-unet", "encoder": encoder,
                                           "encoder_weights": "imagenet"}})


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    import huggingface_hub
    import torch

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))


def test_imagenet_weights_with_the_connection_refused_fail_at_once_naming_the_fix(
        empty_cache, monkeypatch, synthetic_data):
    import socket
    import time

    from unetkit import config as config_mod
    from unetkit.models.unet import build_model

    attempts, waits = [], []

    def refused(*args, **kwargs):
        attempts.append(args)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(time, "sleep", waits.append)
    with pytest.raises(config_mod.ConfigError) as caught:
        build_model(imagenet_cfg("tf_efficientnet_lite0"))
    # "At once": no retry loop and no back-off, whatever the machine's speed.
    assert len(attempts) <= 2 and waits == [], (attempts, waits)
    msg = str(caught.value)
    assert "\n" not in msg and "Connection refused" in msg
    assert "model.encoder_weights=imagenet-local" in msg and "encoder_weights=PATH" in msg
    res = run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out",
                  str(synthetic_data.parent / "no-run"), "--quiet", "--set", "model.arch=timm-unet",
                  "model.encoder=tf_efficientnet_lite0", "model.encoder_weights=imagenet",
                  check=False)
    one_line(clean_error(res, "imagenet-local"))


def test_imagenet_weights_with_the_connection_reset_mid_download_are_one_line(
        empty_cache, monkeypatch):
    import socket

    import huggingface_hub

    from unetkit import config as config_mod
    from unetkit.models.unet import build_model

    class Answered:
        def close(self):
            pass

    def reset(*args, **kwargs):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: Answered())
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", reset)
    with pytest.raises(config_mod.ConfigError, match=r"ConnectionResetError.*imagenet-local"):
        build_model(imagenet_cfg())


def test_imagenet_weights_in_the_local_cache_are_used_without_the_network(monkeypatch,
                                                                          tmp_path):
    import socket

    import huggingface_hub
    import timm
    import torch
    from safetensors.torch import save_file

    from unetkit.models.unet import build_model

    torch.manual_seed(3)
    state = timm.create_model("mobilenetv3_small_050").state_dict()
    cached = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(cached))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name, *a, **k: str(cached) if name == HF_FIRST else None)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used for cached weights")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    model = build_model(imagenet_cfg())
    first = next(k for k in model.encoder.state_dict() if k.endswith("conv_stem.weight"))
    assert torch.equal(model.encoder.state_dict()[first], state["conv_stem.weight"])


HF_FIRST = "model.safetensors"


# ---------------------------------------------------------------------------------------------
# 10. Smaller holes.


def test_report_md_writes_a_data_set_name_as_text_not_html():
    from unetkit.evaluation.report import _html, _markdown

    name = "<img src=x onerror=alert(1)>|x"
    scores = {k: 0.5 for k in ("mDice_point", "mIoU_point", "dice", "sensitivity",
                               "false_alarm_rate", "auroc", "threshold", "min_area")}
    scores.update(frames_positive=1, frames_negative=0)
    md = _markdown("run", [(name, scores)], {name: ["worst/x/a.png"]})
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;&#124;x" in md
    page = _html(md, "run")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;|x" in page
    assert "&amp;lt;" not in page  # escaped once, not twice


@pytest.mark.slow
def test_mlflow_store_defaults_to_the_run_folder_not_the_working_folder(
        synthetic_data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out", str(run),
            "--quiet", "--set", *TINY, "train.epochs=1", "train.loggers=[mlflow]")
    assert (run / "mlflow.db").exists()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_calibrate_warns_when_the_point_it_records_has_sensitivity_0(synthetic_data, tmp_path):
    import json

    import torch

    from unetkit import config as config_mod
    from unetkit.models.unet import build_model

    cfg = config_mod.load(None, None, TINY)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias.fill_(-20.0)  # never any foreground: no lesion is ever flagged
    run = make_run(tmp_path / "run", TINY, model=model)
    neg = tmp_path / "neg"
    write_images(neg, ["n1.png", "n2.png"], size=(64, 64))
    res = run_cli("calibrate", str(run), "--data", str(synthetic_data), "--split", "all",
                  "--negatives", str(neg), "--max-false-alarm", "0.05", "--quiet")
    assert "warning: sensitivity 0" in res.stderr
    assert "sensitivity 0" in json.loads((run / "operating_point.json").read_text())["warning"]


@pytest.mark.machine(MEMORY_CAP_WHY)
def test_a_folder_whose_images_are_only_in_subfolders_is_an_error_naming_them(run, tmp_path):
    """`predict RUN folder/` used to write 0 masks and exit 0 when the images sat one level
    down; `check-data` likewise found nothing. Both now name the subfolders."""
    write_images(tmp_path / "shots" / "day1", ["a.png", "b.png"])
    write_images(tmp_path / "shots" / "day2", ["c.png"])
    proc = capped("predict", str(run), str(tmp_path / "shots"), "--out", str(tmp_path / "o"),
                  "--quiet")
    one_line(clean_error(proc, "day1/", "day2/", "give those folders"))
    assert not (tmp_path / "o").exists()
    data = tmp_path / "data"
    write_images(data / "images" / "part1", ["x.png"])
    write_images(data / "masks", ["x.png"])
    res = run_cli("check-data", str(data), check=False)
    assert res.returncode != 0 and "part1/" in res.stdout + res.stderr, res  # listed as a problem


def test_a_sequence_table_error_names_the_table_not_a_training_key(run, tmp_path):
    from unetkit.data.folders import DataError
    from unetkit.data.tables import read_table

    table = tmp_path / "sequences.csv"
    table.write_text("frame,video\n1.jpg,a\n")
    with pytest.raises(DataError) as err:
        read_table(table, "sequence")
    message = str(err.value)
    assert str(table) in message and "'sequence'" in message
    assert "data.split" not in message and "--set" not in message


@pytest.mark.machine(MEMORY_CAP_WHY)
@pytest.mark.slow
def test_train_predict_evaluate_and_export_print_no_warnings(run, synthetic_data, tmp_path):
    """What a user sees from the everyday verbs holds no library warnings (torch, timm,
    ONNX): a warning is either fixed at its source or not a user's business."""
    out = tmp_path / "run"
    runs = [capped("train", "--recipe", "demo", "--data", str(synthetic_data), "--out", str(out),
                   "--set", *TINY, "train.epochs=1", "--quiet"),
            capped("predict", str(out), str(synthetic_data / "images"), "--out",
                   str(tmp_path / "pred"), "--overlay", "--probs", "--quiet"),
            capped("evaluate", str(out), "--data", str(synthetic_data), "--quiet"),
            capped("export", str(out), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr and "warn(" not in proc.stderr, proc.stderr
