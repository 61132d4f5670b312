"""Inputs, outputs and run folders treated as untrusted, tried as a user or an attacker would:
real files, the real `unetkit` command in a subprocess, memory capped where a bound is claimed."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import process_env, run_cli, start_server
from run_fixtures import make_run
from unetkit.core.files import TMP_SUFFIX, OutputError, atomic_write, remove_temp_files, write_text

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]"]
# Data memory (RLIMIT_DATA: the heap and private mappings, i.e. what allocations use) of a
# subprocess; its shared libraries are not counted. unetkit with torch imported uses ~400 MB.
MEMORY_CAP_MB = 1700
# Why these checks depend on the machine (`machine` marker): the cap is Linux's RLIMIT_DATA,
# which counts what glibc's allocator asks the kernel for; another allocator, C library or
# kernel counts otherwise, and a number tuned here (1700 MB) means nothing there.
MEMORY_CAP_WHY = "a Linux RLIMIT_DATA cap, as glibc's allocator fills it"


def capped(*args: str, mb: int = MEMORY_CAP_MB, fsize: int | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`unetkit ARGS` with its data memory (and, if given, its file sizes) limited."""

    def limit():
        resource.setrlimit(resource.RLIMIT_DATA, (mb << 20, mb << 20))
        if fsize is not None:  # a "full disk": writes past `fsize` bytes fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = process_env()
    return subprocess.run([sys.executable, "-m", "unetkit", *args], env=env, cwd=cwd,
                          preexec_fn=limit, capture_output=True, text=True, timeout=600)


def clean_error(proc, *words: str) -> str:
    """Exit 2, no traceback, and the message says what it must; returns the message."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{err}"
    assert "Traceback" not in err and "MemoryError" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in:\n{err}"
    return err


def write_images(folder: Path, names: list[str], size=(40, 48), seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = folder / name
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("hardening") / "run", TINY)


# -- 1. outputs never destroy or hide anything ---------------------------------------------


def test_predict_never_writes_over_its_inputs_or_the_run_folder(run, tmp_path):
    """`predict RUN imgs --out imgs` used to replace the input PNGs with masks and exit 0."""
    imgs = tmp_path / "imgs"
    write_images(imgs, ["a.png", "b.png"])
    before = snapshot(imgs)
    clean_error(run_cli("predict", str(run), str(imgs), "--out", str(imgs), check=False),
                "would replace the input", "choose another --out")
    clean_error(run_cli("predict", str(run), str(imgs), "--out", str(imgs / "masks"),
                         check=False), "inside the input folder")
    clean_error(run_cli("predict", str(run), str(imgs / "a.png"), "--out", str(imgs),
                         check=False), "would replace the input")
    assert snapshot(imgs) == before
    # An input named like a run-folder file, predicted into the run folder.
    curves = write_images(tmp_path / "other", ["curves.jpg"])[0]
    run_before = snapshot(run)
    clean_error(run_cli("predict", str(run), str(curves), "--out", str(run), check=False),
                "a file of the run folder")
    clean_error(run_cli("export", str(run), "--format", "hub", "--out", str(run), check=False),
                "a file of the run folder")
    assert snapshot(run) == run_before


def test_outputs_with_the_same_name_are_refused_before_anything_is_written(run, tmp_path):
    """Two `x.png` from two folders, or `x.png` beside `x_overlay.png` with --overlay, used to
    overwrite each other while summary.json listed both."""
    a = write_images(tmp_path / "a", ["x.png"], seed=1)[0]
    b = write_images(tmp_path / "b", ["x.png"], seed=2)[0]
    out = tmp_path / "out"
    clean_error(run_cli("predict", str(run), str(a), str(b), "--out", str(out), check=False),
                "x.png would be written for both", str(a), str(b))
    assert not out.exists()
    c = tmp_path / "c"
    write_images(c, ["x.png", "x_overlay.png"])
    clean_error(run_cli("predict", str(run), str(c), "--out", str(out), "--overlay",
                         check=False), "x_overlay.png would be written for both")
    assert not out.exists()
    run_cli("predict", str(run), str(c), "--out", str(out), "--quiet")  # distinct without it
    assert sorted(p.name for p in out.glob("*.png")) == ["x.png", "x_overlay.png"]
    assert len(json.loads((out / "summary.json").read_text())) == 2


def test_atomic_writer_replaces_a_planted_link_not_its_target_and_cleans_up(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mask.png").symlink_to(victim)  # planted where an output will go
    write_text(out / "mask.png", "new")
    assert victim.read_text() == "precious"
    assert not (out / "mask.png").is_symlink() and (out / "mask.png").read_text() == "new"

    def fail(f):
        f.write(b"half")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        atomic_write(out / "mask.png", fail)
    assert (out / "mask.png").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == ["mask.png"]  # no temporary file left
    leftover = out / f".mask.png.x1{TMP_SUFFIX}"
    leftover.write_text("left by a kill")
    assert remove_temp_files(out) == [leftover] and not leftover.exists()
    with pytest.raises(OutputError, match="cannot write here"):
        write_text(victim / "sub" / "x.txt", "under a file")


@pytest.mark.machine(MEMORY_CAP_WHY)
def test_full_disk_and_unwritable_folder_are_one_line_errors_that_keep_earlier_outputs(
        run, tmp_path):
    img = write_images(tmp_path / "imgs", ["scan.png"], size=(300, 400))[0]
    out = tmp_path / "out"
    run_cli("predict", str(run), str(img), "--out", str(out), "--quiet")
    before = snapshot(out)
    # A "full disk": no file may grow past 200 bytes (RLIMIT_FSIZE), as on a full volume.
    err = clean_error(capped("predict", str(run), str(img), "--out", str(out), "--quiet",
                             "--overlay", fsize=200), str(out))
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(out) == before  # nothing replaced, no temporary file left
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    err = clean_error(run_cli("predict", str(run), str(img), "--out", str(blocker / "masks"),
                               check=False), str(blocker))
    assert len(err.strip().splitlines()) == 1, err


# -- 2. bounded memory ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A 9400x9400 PNG of zeros: 86 KB on disk, 88 M pixels (265 MB as RGB) decoded."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("L", (9400, 9400)).save(path)
    return path


@pytest.mark.machine(MEMORY_CAP_WHY)
def test_folder_of_pixel_bombs_is_refused_by_header_within_the_memory_cap(run, bomb, tmp_path):
    """16 such files used to end in a MemoryError traceback; one used 1.4 GB."""
    imgs = tmp_path / "imgs"
    write_images(imgs, ["fine.png"])
    for i in range(16):
        shutil.copy(bomb, imgs / f"bomb{i:02d}.png")
    proc = capped("predict", str(run), str(imgs), "--out", str(tmp_path / "out"), "--quiet",
                  "--overlay", mb=MEMORY_CAP_MB)
    assert proc.returncode == 1, proc.stderr  # 16 files skipped, the rest predicted
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert proc.stderr.count("the pixel budget") == 16
    assert "wrote 1 masks" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["fine.png",
                                                                        "fine_overlay.png"]


@pytest.mark.machine(MEMORY_CAP_WHY)
@pytest.mark.slow
def test_largest_allowed_image_predicts_within_the_stated_memory(run, tmp_path):
    """35 M pixels (7000x5000, just under the 40 M budget) with overlays and probabilities,
    within 1800 MB of data memory (measured: 1.49 GB resident at most).

    The cap counts address space as well as memory: importing scipy.ndimage (component counts)
    reserves about 90 MB of it (OpenBLAS's buffers, never touched: the resident peak moved from
    1.477 to 1.494 GB), so this run needs 1700-1800 MB of cap where it needed 1600-1700."""
    arr = np.zeros((5000, 7000, 3), np.uint8)
    arr[1000:3000, 2000:5000] = 200
    Image.fromarray(arr).save(tmp_path / "big.png")
    del arr
    proc = capped("predict", str(run), str(tmp_path / "big.png"), "--out", str(tmp_path / "out"),
                  "--quiet", "--overlay", "--probs", mb=1800)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "out" / "big_overlay.png") as img:
        assert img.size == (7000, 5000)


# -- 3. a run folder is untrusted input -----------------------------------------------------


def damaged_copy(run: Path, dest: Path, change=None, weights=None) -> Path:
    shutil.copytree(run, dest)
    if change:
        card = json.loads((dest / "config.json").read_text())
        change(card)
        (dest / "config.json").write_text(json.dumps(card))
    if weights is not None:
        from unetkit.runs.folder import save_weights
        save_weights(weights, dest / "model.safetensors")
    return dest


@pytest.mark.machine(MEMORY_CAP_WHY)
def test_config_json_is_validated_before_any_allocation(run, tmp_path, capsys):
    """`base_channels: 100000` used to make predict allocate 360 GB before reading weights."""
    img = write_images(tmp_path / "imgs", ["a.png"])[0]
    huge = damaged_copy(run, tmp_path / "huge",
                        lambda c: c["config"]["model"].update(base_channels=100000))
    clean_error(capped("predict", str(huge), str(img), "--out", str(tmp_path / "out"), mb=800),
                "config.json", "model.base_channels")
    from unetkit import config as config_mod
    from unetkit.cli.main import main
    from unetkit.models.unet import build_model

    def refused(folder: Path, *words: str) -> None:  # the same command, in this process
        assert main(["predict", str(folder), str(img), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err

    refused(damaged_copy(run, tmp_path / "deep", lambda c: c["config"]["model"].update(
        base_channels=1024, depth=8)), "parameters")
    refused(damaged_copy(run, tmp_path / "thr", lambda c: c["config"]["train"].update(
        threshold=1.5)), "train.threshold")  # used to give empty masks with exit 0
    refused(damaged_copy(run, tmp_path / "std", lambda c: c["config"]["data"].update(
        std=[0.25, 0.0, 0.25])), "data.std")
    refused(damaged_copy(run, tmp_path / "edited", lambda c: c.update(classes=["a", "b", "c"])),
            "'classes'")
    other = build_model(config_mod.load(overrides=[*TINY, "model.base_channels=8"]))
    refused(damaged_copy(run, tmp_path / "other", weights=other), "does not match config.json")
    poisoned = build_model(config_mod.load(overrides=TINY))
    with torch.no_grad():
        poisoned.head.weight[0, 0] = float("nan")
    refused(damaged_copy(run, tmp_path / "poisoned", weights=poisoned), "NaN or infinite")


def test_onnx_model_must_match_config_json(run, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = damaged_copy(run, tmp_path / "run")
    run_cli("export", str(folder), "--format", "onnx", "--out", str(folder / "model.onnx"))
    card = json.loads((folder / "config.json").read_text())
    card["config"]["data"]["classes"] = ["background", "polyp", "other"]
    card["config"]["data"]["mask_encoding"] = "index"
    card.update(classes=card["config"]["data"]["classes"], out_channels=3)
    (folder / "config.json").write_text(json.dumps(card))
    img = write_images(tmp_path / "imgs", ["a.png"])[0]
    clean_error(run_cli("predict", str(folder), str(img), "--out", str(tmp_path / "o"),
                         "--backend", "onnx", check=False), "output channels")


def test_mistyped_run_folder_and_run_folder_encoders_never_reach_the_network(
        run, tmp_path, monkeypatch):
    """`unetkit predict runs/kvasri ...` used to become a Hub request for `runs/kvasri`, and an
    encoder `hf-hub:someone/model` in config.json was fetched at load time."""
    img = write_images(tmp_path / "imgs", ["a.png"])[0]
    clean_error(run_cli("predict", "runs/kvasri", str(img), "--out", "o", cwd=tmp_path,
                        check=False), "runs/kvasri: no such run folder", "hf://runs/kvasri")
    timm_run = make_run(tmp_path / "timm", ["model.arch=timm-unet", "model.encoder=resnet10t",
                                            "data.image_size=[32,32]"])
    hostile = damaged_copy(timm_run, tmp_path / "hostile", lambda c: c["config"]["model"].update(
        encoder="hf-hub:someone/model", encoder_weights="imagenet"))
    clean_error(run_cli("predict", str(hostile), str(img), "--out", str(tmp_path / "o"),
                         check=False), "hf-hub:someone/model", "never downloads")
    # In this process, with every download function of huggingface_hub replaced by a spy.
    hub = pytest.importorskip("huggingface_hub")
    calls = []
    for name in ("snapshot_download", "hf_hub_download"):
        monkeypatch.setattr(hub, name, lambda *a, **k: calls.append((a, k)))
    from unetkit.cli.main import main
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "runs/kvasri", str(img), "--out", "o", "--quiet"]) == 2
    assert main(["predict", str(hostile), str(img), "--out", "o", "--quiet"]) == 2
    assert main(["predict", str(timm_run), str(img), "--out", "o", "--quiet"]) == 0
    assert calls == []


# -- 4. every input checked -----------------------------------------------------------------


def test_evaluate_checks_masks_like_check_data(tmp_path):
    run = make_run(tmp_path / "run", [*TINY, "data.classes=[background,polyp,other]",
                                      "data.mask_encoding=index"])
    data = tmp_path / "data"
    write_images(data / "images", [f"im{i}.png" for i in range(4)])
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 3, (40, 48), dtype=np.uint8)).save(
            data / "masks" / f"im{i}.png")
    ok = run_cli("evaluate", str(run), "--data", str(data), "--split", "all", "--quiet")
    assert "mDice" in ok.stdout
    wide = np.zeros((40, 48), np.uint16)
    wide[:4] = 257  # wraps to 1 in 8 bits: a silently wrong class without the check
    Image.fromarray(wide).save(data / "masks" / "im1.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(data / "masks" / "im2.png")
    clean_error(run_cli("evaluate", str(run), "--data", str(data), "--split", "all",
                        check=False), "im1.png: values [257]", "im2.png: mask is 24x20")


@pytest.mark.machine(MEMORY_CAP_WHY)
def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a0: [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    lines[0] = "a0: &a0 [x, x, x, x, x, x, x, x, x]"
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")  # 9^10 strings if expanded
    clean_error(capped("train", "--config", str(tmp_path / "bomb.yaml"), mb=800),
                "aliases")


# -- 5. resume and restart always possible --------------------------------------------------

KILL_IN_FIRST_EPOCH = """
import os, signal, sys
from unetkit import Trainer, config
from unetkit.training.fit import fit
Trainer.train_epoch = lambda self: os.kill(os.getpid(), signal.SIGKILL)
cfg = config.load(overrides=sys.argv[3:], data_root=sys.argv[1])
fit(cfg, sys.argv[2], progress=False)
"""

TRAIN = [*TINY, "train.epochs=2", "train.batch_size=4", "train.device='cpu'",
         "train.samples=0", "data.split.val_fraction=0.25"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    from unetkit.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("resume"), count=16, size=32)


@pytest.mark.slow
def test_run_killed_during_its_first_epoch_resumes_with_one_command(small_data, tmp_path):
    """It used to be neither resumable ("nothing to resume from") nor restartable."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_IN_FIRST_EPOCH, str(small_data), str(out),
                           *TRAIN], env=process_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / "config.yaml").exists() and not (out / "checkpoints").exists()
    (out / f".model.safetensors.k1ll3d{TMP_SUFFIX}").write_bytes(b"half a file")
    clean_error(run_cli("train", "--recipe", "demo", "--data", str(small_data), "--out", str(out),
                         "--set", *TRAIN, check=False), "already holds a run", "--resume")
    done = run_cli("train", "--resume", str(out), "--quiet")
    assert "stopped before its first checkpoint" in done.stdout
    assert [r.split(",")[0] for r in (out / "metrics.csv").read_text().split()[1:]] == ["1", "2"]
    assert not list(out.rglob(f"*{TMP_SUFFIX}"))


def test_checkpoint_that_does_not_fit_falls_back_or_says_what_differs(small_data, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--recipe", "demo", "--data", str(small_data), "--out", str(out), "--quiet",
            "--set", *TRAIN)
    from unetkit import config as config_mod
    from unetkit.models.unet import build_model
    from unetkit.training.checkpoints import read_checkpoint
    state = read_checkpoint(out / "checkpoints" / "last.pt")
    # as a run killed after its last save leaves it: the save before it too
    shutil.copy(out / "checkpoints" / "last.pt", out / "checkpoints" / "previous.pt")
    wider = build_model(config_mod.load(overrides=[*TINY, "model.base_channels=8"]))
    torch.save({**state, "model": wider.state_dict()}, out / "checkpoints" / "last.pt")
    done = run_cli("train", "--resume", str(out), "--set", "train.epochs=3")
    assert "resuming from" in done.stdout and "previous.pt" in done.stdout
    assert "differ in shape" in done.stdout
    # Neither fits a configuration changed on the command line: the error says what differs.
    clean_error(run_cli("train", "--resume", str(out), "--set", "train.epochs=4",
                         "model.base_channels=6", check=False), "differ in shape",
                "nothing to resume from")


# -- properties: random configurations and damaged run folders ------------------------------


def test_random_damaged_run_folders_give_a_clear_error_or_the_right_mask(run, tmp_path):
    """40 seeded damages (random config.json fields and types, edited summaries, truncated or
    bit-flipped files, NaN weights, missing files, harmless reformatting), each predicted on
    with the command line, all in one process under the memory cap: exit 2 with a one-line
    message, or exit 0 with exactly the mask the configuration gives; never anything else."""
    img = write_images(tmp_path / "imgs", ["probe.png"], size=(37, 53))[0]
    env = process_env()
    script = Path(__file__).with_name("damage_cases.py")

    def limit():
        mb = MEMORY_CAP_MB << 20
        resource.setrlimit(resource.RLIMIT_DATA, (mb, mb))

    proc = subprocess.run([sys.executable, str(script), str(run), str(img), str(tmp_path / "w"),
                           "14", "40"], env=env, preexec_fn=limit, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    cases = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(cases) == 40
    for c in cases:
        assert c["escaped"] is None, c
        assert c["rc"] in (0, 2), c
        if c["rc"] == 2:
            lines = c["message"].strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("unetkit predict: error: "), c
        else:
            assert c["right_mask"] is True, c
    outcomes = [c["rc"] for c in cases]
    assert outcomes.count(2) >= 15 and outcomes.count(0) >= 5, outcomes  # both kinds were tried


def test_random_configuration_values_are_refused_before_work_or_within_range(tmp_path):
    """200 seeded random values for every range-checked key, through `--set` parsing and the
    same validation as training: refused with a message naming the key, or accepted inside
    the documented range with a model of bounded size."""
    import random

    from unetkit import config as config_mod
    from unetkit.config.rules import RANGES, in_range
    from unetkit.models.size import MAX_PARAMETERS, meta_model
    from unetkit.training.checks import check_training

    rng = random.Random(3)
    keys = sorted(RANGES) + ["data.image_size", "data.mean", "data.std",
                             "train.loss.class_weights", "data.ignore_index"]
    pool = ["0", "-1", "1", "2", "0.5", "1.0", "1e-3", "1e9", "nan", "inf", "-inf", "'x'",
            "None", "True", "[]", "[1]", "[64, 64]", "[0, 64]", "[8, 100000]", "[0.5, 0.5, 0.5]",
            "[0.5, 0, 0.5]", "[1, 2]", "3", "255", "999999999"]
    accepted = refused = 0
    for _ in range(200):
        key, value = rng.choice(keys), rng.choice(pool)
        try:
            cfg = config_mod.load("demo", overrides=[f"{key}={value}"])
            check_training(cfg)  # what needs an engine: the model's size, augmentation ops
        except config_mod.ConfigError as exc:
            assert key.split(".")[-1] in str(exc) or "parameters" in str(exc), (key, value, exc)
            refused += 1
            continue
        accepted += 1
        got = cfg
        for part in key.split("."):
            got = getattr(got, part)
        if key in RANGES:
            assert in_range(float(got), *RANGES[key]), (key, value)
        assert sum(p.numel() for p in meta_model(cfg).parameters()) <= MAX_PARAMETERS
        assert all(8 <= s <= 8192 for s in cfg.data.image_size)
    assert accepted >= 20 and refused >= 60, (accepted, refused)  # seed 3: 25 and 175


# -- 6. the web page keeps nothing ----------------------------------------------------------


@pytest.mark.slow
def test_web_page_deletes_uploads_once_answered_and_everything_at_exit(run, tmp_path):
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    import time

    from gradio_client import Client, handle_file

    tmp = tmp_path / "tmp"  # the server's temporary folder, to see what it leaves there
    abandoned = tmp / "unetkit-serve-999999999-x"  # of a killed server (no such process id)
    abandoned.mkdir(parents=True)
    (abandoned / "upload.jpg").write_bytes(b"left behind")
    upload = tmp_path / "upload.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8)).save(upload)
    env = process_env(TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False",
                      UNETKIT_SERVE_UPLOAD_GRACE_S="0.5")  # uploads go 0.5 s after answered
    proc, url, client = start_server(
        ["serve", str(run)], env, tmp_path / "serve.log",
        ready=lambda url: Client(url, verbose=False, download_files=str(tmp_path / "got")))
    try:
        work = [p for p in tmp.glob("unetkit-serve-*")]
        assert not abandoned.exists() and len(work) == 1
        for _ in range(3):
            mask, info = client.predict(handle_file(str(upload)), False, 0.5, api_name="/segment")
            assert info["size"] == [60, 80] and Path(mask).exists()
        assert list((work[0] / "gradio").rglob("upload.png"))  # Gradio's cache is in there...
        deadline = time.monotonic() + 120  # ...but each upload goes once answered (the timer's
        while list(work[0].rglob("upload.jpg")):  # run is waited for, not assumed)
            assert time.monotonic() < deadline, "the upload was never deleted"
            time.sleep(0.2)
        assert len(list((work[0] / "masks").iterdir())) <= 2  # results: bounded
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(tmp.glob("unetkit-serve-*")), list(tmp.rglob("*"))
