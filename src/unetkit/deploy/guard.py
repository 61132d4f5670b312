"""What the web page serves back and what it takes in, checked before Gradio sees a request.

`PageGuard` is an ASGI middleware around Gradio's app (plain ASGI: no Gradio import here).

- **Files served back** (`.../file=PATH`): inline only with an image or video type (PNG, JPEG,
  GIF, WebP, MP4, WebM), which is what the page itself makes: decoded inputs, masks, overlays.
  Anything else, and every file a client uploaded whatever its name, goes out as
  `application/octet-stream` with `Content-Disposition: attachment`: a browser downloads it and
  never renders it, so an uploaded HTML or SVG file cannot run script on the page's origin.
  Every file response also carries `X-Content-Type-Options: nosniff` (no guessing a type from
  the bytes) and `Content-Security-Policy: sandbox` (no script, even if something slipped
  through). Files named by URL (`file=https://...`) are refused: the page fetches nothing for
  a client.
- **Uploads** (`.../upload`): must state their length, and are refused (413) when they would
  take the uploads the page holds over its byte budget (`WorkFolder.room_for`); the files Gradio
  stored are handed to the WorkFolder, which deletes those never used in a request.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

# Types a browser may show inline: images and videos it decodes without running anything.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "video/mp4", "video/webm"}
FILE_HEADERS = [(b"x-content-type-options", b"nosniff"),
                (b"content-security-policy", b"sandbox")]


def file_target(path: str) -> str | None:
    """The file a request path names (`/gradio_api/file=PATH`, `/file=PATH`, `/file/PATH`)."""
    for marker in ("/file=", "/file/"):
        head, found, tail = path.partition(marker)
        if found and head in ("", "/gradio_api"):
            return unquote(tail)
    return None


class PageGuard:
    def __init__(self, app, files, log=print) -> None:
        self.app, self.files, self.log = app, files, log  # files: deploy.workdir.WorkFolder

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if scope["method"] == "POST" and path.rstrip("/") in ("/gradio_api/upload", "/upload"):
            return await self.upload(scope, receive, send)
        target = file_target(path)
        if target is not None:
            return await self.file(target, scope, receive, send)
        return await self.app(scope, receive, send)

    async def file(self, target: str, scope, receive, send) -> None:
        if "://" in target:
            return await refuse(send, 403, "this page serves only its own files")
        upload = self.files.is_upload(Path(target))

        async def send_safely(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-content-type-options",
                                                b"content-security-policy")]
                kind = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if upload or kind.split(b";")[0].strip().decode("latin-1") not in INLINE_TYPES:
                    headers = [(k, v) for k, v in headers
                               if k.lower() not in (b"content-type", b"content-disposition")]
                    headers += [(b"content-type", b"application/octet-stream"),
                                (b"content-disposition", b"attachment")]
                message = {**message, "headers": headers + FILE_HEADERS}
            await send(message)

        await self.app(scope, receive, send_safely)

    async def upload(self, scope, receive, send) -> None:
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is None or not length.isdigit():
            return await refuse(send, 411, "an upload must state its length (Content-Length)")
        size = int(length)
        if not self.files.room_for(size):
            self.log(f"refused an upload of {size / 1e6:.1f} MB: the page's uploads would pass "
                     f"{self.files.budget / 1e6:.0f} MB")
            return await refuse(send, 413, "the page holds as many uploads as it takes; send "
                                "fewer or smaller files, or try again in a minute")
        status, body = 0, bytearray()

        async def watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.files.arrived(size)
        if status == 200:
            try:
                paths = json.loads(bytes(body))
            except ValueError:
                paths = []
            self.files.received([Path(p) for p in paths if isinstance(p, str)])


async def refuse(send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})
