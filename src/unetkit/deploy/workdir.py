"""The web page's working folder: nothing a client sends or receives is kept.

Uploads (Gradio's cache) and results live in one temporary folder per server, named after its
process id. Uploads are deleted once no upload or request holds them (UPLOAD_GRACE_S later),
uploads never used in a request UNUSED_UPLOAD_S after they arrived (SHOWN_UPLOAD_S for one shown
on the page but never sent), results once two newer requests exist, and the whole folder when
the server stops (or, after a SIGKILL, when the next server starts). The uploads held at once
are bounded: UPLOAD_BUDGET_MB in all (`room_for`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

WORK_PREFIX = "unetkit-serve-"  # + the server's process id: a killed server's folder is found
# Gradio files an upload under a hash of its content, so requests that send the same file share
# one path, and an identical re-upload replaces the file there (a new file renamed over it).
# Each path is reference-counted: an upload shown on the page and every request reading it hold
# it; at zero holds it is deleted this many seconds later, so that an identical request still in
# the queue (not yet holding it) can read it. A newer upload renamed over the path is never
# deleted for an older answer. 0 deletes at once.
UPLOAD_GRACE_S = float(os.environ.get("UNETKIT_SERVE_UPLOAD_GRACE_S", "10"))
# An upload no request ever used is deleted this long after it arrived: time enough for a
# request queued behind others to start on it. One shown on the page (a video waiting for its
# button) is kept longer, as long as results are offered for download.
UNUSED_UPLOAD_S = float(os.environ.get("UNETKIT_SERVE_UNUSED_UPLOAD_S", "300"))
SHOWN_UPLOAD_S = 600.0
# The uploads on disk at once, in all: an upload that would pass it first makes room by deleting
# the oldest uploads that nothing holds, and is refused when that is not enough.
UPLOAD_BUDGET_MB = float(os.environ.get("UNETKIT_SERVE_UPLOAD_BUDGET_MB", "200"))
SWEEP_S = 1.0  # how often unused uploads are looked for


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file a path names now (inode, modification time): a re-upload changes it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class WorkFolder:
    def __init__(self) -> None:
        remove_abandoned_work_dirs()
        self.path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
        self.uploads = self.path / "gradio"  # Gradio's upload and result cache (see `serve`)
        self.lock = threading.Lock()
        self.holds: dict[Path, int] = {}  # upload path -> uploads and requests holding it
        self.shown: dict[Path, int] = {}  # upload path -> uploads not yet answered
        self.read: dict[Path, tuple[int, int] | None] = {}  # path -> the file requests read
        self.doomed: dict[Path, threading.Timer] = {}  # path -> its deletion timer
        self.arrivals: dict[Path, float] = {}  # upload path -> when it arrived (monotonic)
        self.incoming = 0  # bytes of uploads being received now
        self.budget = int(UPLOAD_BUDGET_MB * 1e6)
        self.stopped = threading.Event()
        self.sweeper = threading.Thread(target=self._sweep_forever, daemon=True)
        self.sweeper.start()

    def close(self) -> None:
        self.stopped.set()
        with self.lock:
            for timer in self.doomed.values():
                timer.cancel()
        shutil.rmtree(self.path, ignore_errors=True)

    # -- uploads as they arrive (see guard.PageGuard) ------------------------------------------

    def room_for(self, size: int) -> bool:
        """Whether an upload of `size` bytes fits in the budget, after deleting the oldest
        uploads nothing holds if need be; if it fits, its bytes are counted until `arrived`."""
        with self.lock:
            waiting = {p: _size(p) for p in self.arrivals}
            for path in sorted(waiting, key=self.arrivals.get):
                if sum(waiting.values()) + self.incoming + size <= self.budget:
                    break
                if path not in self.holds:
                    self._drop(path)
                    del waiting[path]
            if sum(waiting.values()) + self.incoming + size > self.budget:
                return False
            self.incoming += size
            return True

    def arrived(self, size: int) -> None:
        with self.lock:
            self.incoming -= size

    def received(self, paths: list[Path]) -> None:
        """Gradio stored these uploads: each is deleted unless a request uses it in time."""
        now = time.monotonic()
        with self.lock:
            for path in map(Path, paths):
                if self._ours(path):
                    self.arrivals[path] = now

    def is_upload(self, path: Path) -> bool:
        """Whether `path` is a file a client uploaded (served back only as a download)."""
        return Path(os.path.abspath(path)) in self.arrivals

    def sweep(self, now: float | None = None) -> None:
        """Delete the uploads no request used in time (see UNUSED_UPLOAD_S)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            for path, when in list(self.arrivals.items()):
                held, shown = self.holds.get(path, 0), self.shown.get(path, 0)
                if not path.exists():
                    del self.arrivals[path]
                elif ((not held and path not in self.doomed and now - when > UNUSED_UPLOAD_S)
                      or (held and held == shown and now - when > SHOWN_UPLOAD_S)):
                    self._drop(path)

    def _drop(self, path: Path) -> None:
        """Delete an upload now, whatever held it (the lock is held)."""
        timer = self.doomed.pop(path, None)
        if timer is not None:
            timer.cancel()
        for table in (self.holds, self.shown, self.read, self.arrivals):
            table.pop(path, None)
        path.unlink(missing_ok=True)

    def _sweep_forever(self) -> None:
        while not self.stopped.wait(SWEEP_S):
            self.sweep()

    def new_output_dir(self) -> Path:
        """A fresh folder for one request's mask files. Gradio copies a request's results into
        its own cache once answered, so only the newest earlier folder (perhaps still being
        copied) is kept: at most two requests' masks are ever here."""
        root = self.path / "masks"
        root.mkdir(exist_ok=True)
        earlier = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in earlier[:-1]:
            shutil.rmtree(old, ignore_errors=True)
        out = root / uuid.uuid4().hex
        out.mkdir()
        return out

    def _ours(self, path: Path) -> bool:
        """Only Gradio's copies are ever deleted, never a file of this machine given by path,
        nor an example."""
        return path.resolve().is_relative_to(self.uploads.resolve())

    def uploaded(self, path: Path) -> None:
        """An upload reached the page (Gradio's upload event): it is held until a request on it
        is answered, even when an earlier answer's deletion of the same path is pending."""
        path = Path(path)
        if self._ours(path):
            with self.lock:
                self.shown[path] = self.shown.get(path, 0) + 1
            self.hold(path)

    def hold(self, path: Path) -> None:
        """A request (or an upload) refers to this file: it is not deleted until released."""
        path = Path(path)
        if not self._ours(path):
            return
        with self.lock:
            self.holds[path] = self.holds.get(path, 0) + 1
            timer = self.doomed.pop(path, None)
            self.read[path] = _identity(path)
        if timer is not None:
            timer.cancel()

    def forget(self, path: Path) -> None:
        """A request on this upload is answered: its hold (and that of the upload it answered)
        is released; the file is deleted UPLOAD_GRACE_S after the last hold goes."""
        path = Path(path)
        if not self._ours(path):
            return
        with self.lock:
            releases = 1 + (self.shown.get(path, 0) > 0)
            if self.shown.get(path, 0) > 0:
                self.shown[path] -= 1
            left = max(0, self.holds.get(path, 0) - releases)
            self.holds[path] = left
            if left:
                return
            del self.holds[path]
            self.shown.pop(path, None)
            answered = self.read.pop(path, None)
            if UPLOAD_GRACE_S > 0:
                timer = threading.Timer(UPLOAD_GRACE_S, self._delete, (path, answered))
                timer.daemon = True
                self.doomed[path] = timer
                timer.start()
                return
        self._remove(path, answered)

    def _delete(self, path: Path, answered) -> None:
        with self.lock:
            if self.doomed.get(path) is not threading.current_thread():
                return  # held again, or re-armed, since this timer started
            del self.doomed[path]
            self._remove(path, answered)

    @staticmethod
    def _remove(path: Path, answered) -> None:
        if answered is not None and _identity(path) != answered:
            return  # a newer upload was renamed over it: a request still to come reads it
        path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def remove_abandoned_work_dirs() -> None:
    """Delete the folders of servers that were killed (SIGKILL, power cut) before cleaning up:
    their process id, in the folder's name, no longer runs."""
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        pid = folder.name[len(WORK_PREFIX):].split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's running server
            pass
