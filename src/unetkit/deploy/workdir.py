"""The web page's working folder: nothing a client sends or receives is kept.

Uploads (Gradio's cache) and results live in one temporary folder per server, named after its
process id. Uploads are deleted once answered (UPLOAD_GRACE_S later), results once two newer
requests exist, and the whole folder when the server stops (or, after a SIGKILL, when the next
server starts).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

WORK_PREFIX = "unetkit-serve-"  # + the server's process id: a killed server's folder is found
# Gradio files an upload under a hash of its content, so requests that send the same file share
# one path: an upload is deleted this many seconds after its answer, not at once, so that an
# identical request still in the queue can read it (a request that reads it again postpones its
# deletion). 0 deletes it at once.
UPLOAD_GRACE_S = float(os.environ.get("UNETKIT_SERVE_UPLOAD_GRACE_S", "10"))


class WorkFolder:
    def __init__(self) -> None:
        remove_abandoned_work_dirs()
        self.path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
        self.uploads = self.path / "gradio"  # Gradio's upload and result cache (see `serve`)
        self.lock, self.doomed = threading.Lock(), {}  # upload path -> its deletion timer

    def close(self) -> None:
        with self.lock:
            for timer in self.doomed.values():
                timer.cancel()
        shutil.rmtree(self.path, ignore_errors=True)

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

    def hold(self, path: Path) -> None:
        """A request reads this upload: its deletion waits until that request is answered."""
        with self.lock:
            timer = self.doomed.pop(Path(path), None)
        if timer is not None:
            timer.cancel()

    def forget(self, path: Path) -> None:
        """Delete an uploaded file once it is answered, after UPLOAD_GRACE_S (only Gradio's
        copy, never a file of this machine given by path, nor an example)."""
        path = Path(path)
        if not path.resolve().is_relative_to(self.uploads.resolve()):
            return
        if UPLOAD_GRACE_S <= 0:
            path.unlink(missing_ok=True)
            return
        self.hold(path)
        timer = threading.Timer(UPLOAD_GRACE_S, self._delete, (path,))
        timer.daemon = True
        with self.lock:
            self.doomed[path] = timer
        timer.start()

    def _delete(self, path: Path) -> None:
        with self.lock:
            if self.doomed.get(path) is not threading.current_thread():
                return  # held again, or re-armed, since this timer started
            del self.doomed[path]
        path.unlink(missing_ok=True)


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
