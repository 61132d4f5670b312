"""The web page's uploads: never served back as active content, deleted when unused, bounded in
total; and a server that starts behind a proxy, refuses files in one line and stops in one.

The guard and the working folder are tested without Gradio (fast, in this process); one server
runs in this process on a port the OS picks, and one `unetkit serve` process is stopped with
SIGTERM as a service manager would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import process_env
from run_fixtures import make_run
from unetkit.deploy import workdir
from unetkit.deploy.guard import PageGuard
from unetkit.deploy.workdir import WorkFolder

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]"]
EVIL_HTML = b"<html><script>alert(document.domain)</script></html>"
EVIL_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'


def free_port() -> int:
    with socket.socket() as s:  # a free port, chosen by the OS
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def files(monkeypatch):
    folder = WorkFolder()
    yield folder
    folder.close()


def stored(files: WorkFolder, name: str, data: bytes) -> Path:
    """A file where Gradio stores an upload (a folder named after its content's hash)."""
    path = files.uploads / f"{abs(hash(data)):x}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- the guard, without Gradio


def call(guard: PageGuard, method: str, path: str, headers=(), body: bytes = b""):
    """One request through the guard: (status, headers as a dict, body)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return (start["status"], {k.decode(): v.decode() for k, v in start.get("headers", [])},
            b"".join(m.get("body", b"") for m in sent[1:]))


def gradio_like(files: WorkFolder, kind: bytes, stored_paths=()):
    """An ASGI app answering as Gradio does: files inline with a type from the name; uploads
    with the JSON list of the paths it stored."""
    async def app(scope, receive, send):
        if scope["path"].endswith("/upload"):
            body = json.dumps([str(p) for p in stored_paths]).encode()
            headers = [(b"content-type", b"application/json")]
        else:
            body, headers = b"bytes", [(b"content-type", kind),
                                       (b"content-disposition", b'inline; filename="x"')]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    return app


@pytest.mark.parametrize("kind", [b"text/html; charset=utf-8", b"image/svg+xml", b"text/plain",
                                  b"application/json", b"application/xhtml+xml"])
def test_a_file_that_is_not_an_image_or_video_is_only_ever_a_download(files, kind):
    guard = PageGuard(gradio_like(files, kind), files)
    status, headers, _ = call(guard, "GET", f"/gradio_api/file={files.path}/masks/x")
    assert status == 200
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == "attachment"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox"


def test_images_the_page_made_are_inline_and_an_upload_never_is(files):
    made = files.path / "gradio" / "abc" / "mask.png"
    guard = PageGuard(gradio_like(files, b"image/png"), files)
    for route in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
        status, headers, _ = call(guard, "GET", f"{route}{made}")
        assert headers["content-type"] == "image/png"
        assert headers["content-disposition"].startswith("inline")
        assert headers["x-content-type-options"] == "nosniff"
    upload = stored(files, "photo.png", b"<html>not a png</html>")
    files.received([upload])
    _, headers, _ = call(guard, "HEAD", f"/gradio_api/file={upload}")
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == "attachment"
    status, _, body = call(guard, "GET", "/gradio_api/file=https://example.org/x.png")
    assert status == 403 and b"only its own files" in body  # nothing fetched for a client


def test_uploads_are_bounded_in_total_and_refused_in_one_line(files, monkeypatch):
    files.budget = 1000
    lines = []
    first = stored(files, "a.png", b"x" * 600)
    guard = PageGuard(gradio_like(files, b"", [first]), files, log=lines.append)
    length = [(b"content-length", b"600")]
    assert call(guard, "POST", "/gradio_api/upload", length)[0] == 200
    assert files.is_upload(first) and files.incoming == 0
    files.hold(first)  # a request reads it: it stays, and the next upload does not fit
    status, _, body = call(guard, "POST", "/gradio_api/upload", length)
    assert status == 413 and b"as many uploads as it takes" in body
    assert len(lines) == 1 and lines[0].startswith("refused an upload of 0.0 MB")
    assert first.exists()
    assert call(guard, "POST", "/gradio_api/upload")[0] == 411  # no stated length
    files.forget(first)  # answered; nothing holds it now: a new upload makes room
    second = stored(files, "b.png", b"y" * 600)
    guard = PageGuard(gradio_like(files, b"", [second]), files, log=lines.append)
    assert call(guard, "POST", "/gradio_api/upload", length)[0] == 200
    assert not first.exists() and second.exists()


def test_an_upload_no_request_uses_is_deleted(files, monkeypatch):
    monkeypatch.setattr(workdir, "UNUSED_UPLOAD_S", 5.0)
    unused, used, shown = (stored(files, f"{n}.png", n.encode() * 10)
                           for n in ("unused", "used", "shown"))
    files.received([unused, used, shown])
    files.hold(used)  # a request still reads it
    files.uploaded(shown)  # on the page (a video waiting for its button)
    now = time.monotonic()
    files.sweep(now + 1)
    assert unused.exists()
    files.sweep(now + 6)
    assert not unused.exists() and used.exists() and shown.exists()
    files.sweep(now + workdir.SHOWN_UPLOAD_S + 1)  # never sent: it goes too
    assert used.exists() and not shown.exists()
    assert not files.is_upload(unused) and files.is_upload(used)


# ---------------------------------------------------------------- a server in this process


@pytest.fixture
def page(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from unetkit.deploy.page import ModelPage

    monkeypatch.setattr(workdir, "UPLOAD_GRACE_S", 0.0)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # restored afterwards
    page = ModelPage(make_run(tmp_path / "run", TINY), "cpu")
    yield page
    page.close()


def test_the_page_serves_uploaded_html_and_svg_only_as_downloads(page, tmp_path, monkeypatch):
    """Behind a proxy (HTTP_PROXY set, NO_PROXY not): the page still starts, its own address
    not proxied. An uploaded HTML or SVG file comes back only as a download; the mask of an
    image as an inline PNG; uploads no request used are deleted and their total is bounded."""
    import httpx

    from unetkit.deploy.serve import start

    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    image = tmp_path / "polyp.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), np.uint8)).save(image)
    lines = []
    app = start(page, "127.0.0.1", free_port(), log=lines.append)
    try:
        with httpx.Client(base_url=app.local_url, trust_env=False, timeout=60) as http:
            sent = {"evil.html": EVIL_HTML, "evil.svg": EVIL_SVG, "polyp.png": image.read_bytes()}
            paths = http.post("gradio_api/upload",
                              files=[("files", (n, d)) for n, d in sent.items()]).json()
            for path in paths:
                got = http.get(f"gradio_api/file={path}")
                assert got.status_code == 200 and got.content == sent[Path(path).name]
                assert got.headers["content-type"] == "application/octet-stream", path
                assert got.headers["content-disposition"] == "attachment"
                assert got.headers["x-content-type-options"] == "nosniff"
            # A request on the image: its mask, made by the page, is served inline as a PNG.
            from gradio_client import Client, handle_file

            client = Client(app.local_url, verbose=False, download_files=str(tmp_path / "got"),
                            analytics_enabled=False, httpx_kwargs={"trust_env": False})
            mask, info = client.predict(handle_file(str(image)), False, 0.5, api_name="/segment")
            assert info["size"] == [40, 48]
            made = [p for p in page.uploads.rglob("*.png") if not page.files.is_upload(p)]
            assert made
            got = http.get(f"gradio_api/file={made[0]}")
            assert got.headers["content-type"] == "image/png"
            assert got.headers["content-disposition"].startswith("inline")
            # Unused uploads go; ten 5 MB ones never sum past the budget.
            monkeypatch.setattr(workdir, "UNUSED_UPLOAD_S", 0.0)
            page.files.sweep()
            assert not any(Path(p).exists() for p in paths)
            page.files.budget = 20_000_000
            big = np.random.default_rng(1).bytes(5_000_000)
            codes = [http.post("gradio_api/upload",
                               files=[("files", (f"big{i}.bin", big[i:] + big[:i]))]).status_code
                     for i in range(10)]
            kept = sum(p.stat().st_size for p in page.uploads.rglob("big*.bin"))
            assert codes == [200] * 10 and kept <= 20_000_000
    finally:
        app.close(verbose=False)
    assert not any("Traceback" in line for line in lines)


# ---------------------------------------------------------------- `unetkit serve`, stopped


def test_serve_behind_a_proxy_refuses_in_one_line_and_stops_in_one_on_sigterm(tmp_path):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    run = make_run(tmp_path / "run", TINY)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    port = free_port()
    env = process_env(HTTP_PROXY=f"http://127.0.0.1:{free_port()}",
                      GRADIO_ANALYTICS_ENABLED="False")
    for var in ("NO_PROXY", "no_proxy"):
        env.pop(var, None)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "unetkit", "serve", str(run), "--port",
                                 str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "serving" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                        httpx_kwargs={"trust_env": False})
        with pytest.raises(Exception, match="notes.txt: cannot read"):
            client.predict(handle_file(str(notes)), False, 0.5, api_name="/segment")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = log.read_text().strip().splitlines()
    assert lines[0].startswith("serving ") and f"http://127.0.0.1:{port}/" in lines[0]
    assert lines[1:] == [
        "refused an upload: notes.txt: cannot read this image (not an image format Pillow "
        "knows); re-export it as PNG or JPEG, or remove it from the folder",
        "stopped (SIGTERM); the page's uploads and results are deleted"]
