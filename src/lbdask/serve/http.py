"""HTTP for web applications: `GET /images/{id}` answered through the serving client.

A tornado application (tornado ships with distributed: Dask's dashboard runs on it) on the
same asyncio loop as one `AsyncServingClient`, so every request is one coroutine reading
through the same ring and worker handler as `lbdask.open(DEST, scheduler=...)`: there is no
second read path. The ETag is the SHA-256 of the bytes read, which are the same on every
read and every worker (they equal `lbdask read`), so any gateway process gives the same tag.
"""
from __future__ import annotations

import hashlib
import logging

import tornado.web

from lbdask.errors import StoreError, UnknownImageError
from lbdask.serve.client import AsyncServingClient
from lbdask.serve.settings import HttpConfig

log = logging.getLogger("lbdask.http")

#: Longest id accepted, in UTF-8 bytes (an S3 key's limit; archive ids are relative paths).
MAX_ID_BYTES = 1024


def id_problem(image_id: str) -> str | None:
    """Why `image_id` cannot name an archived image (answered with 400), or None."""
    if not image_id:
        return "empty image id"
    if "\x00" in image_id:
        return "image id contains NUL"
    if len(image_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"image id longer than {MAX_ID_BYTES} bytes"
    if any(part in (".", "..") for part in image_id.split("/")):
        return "image id has a '.' or '..' segment"
    return None


class _Plain(tornado.web.RequestHandler):
    """Error answers as one line of text; no access log (see `make_app`)."""

    def initialize(self, box: AsyncServingClient, config: HttpConfig) -> None:
        self.box, self.config = box, config

    def answer(self, status: int, text: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(text + "\n")


class ImageHandler(_Plain):
    """`GET` and `HEAD /images/{id}`: the rest of the path, URL-decoded, is the id (it may contain `/`)."""

    async def get(self, image_id: str) -> None:
        await self._image(image_id, send_body=True)

    async def head(self, image_id: str) -> None:
        await self._image(image_id, send_body=False)

    async def _image(self, image_id: str, send_body: bool) -> None:
        problem = id_problem(image_id)
        if problem:
            return self.answer(400, problem)
        try:
            png = await self.box.read(image_id)
        except UnknownImageError:
            return self.answer(404, f"no image {image_id!r}")
        except StoreError as exc:
            self.set_header("Retry-After", str(self.config.retry_after_s))
            return self.answer(503, f"archive unreachable: {exc}")
        except Exception as exc:  # noqa: BLE001 - any other failure: one log line, a 500
            log.error("%s /images/%s failed: %s: %s", self.request.method, image_id, type(exc).__name__, exc)
            return self.answer(500, "internal error")
        self.set_header("ETag", f'"{hashlib.sha256(png).hexdigest()}"')
        self.set_header("Cache-Control", f"public, max-age={self.config.max_age_s}")
        self.set_header("Content-Type", "image/png")
        if self.check_etag_header():  # If-None-Match holds this tag: 304, no body
            self.set_status(304)
            return self.finish()
        if send_body:
            return self.finish(png)
        self.set_header("Content-Length", str(len(png)))
        self.finish()


class HealthHandler(_Plain):
    """`GET /healthz`: 200 when the scheduler answers and a worker serves, else 503."""

    async def get(self) -> None:
        if await self.box.ready():
            self.answer(200, "ok")
        else:
            self.answer(503, "not ready: no scheduler or no worker serving")


def make_app(box: AsyncServingClient, config: HttpConfig) -> tornado.web.Application:
    """The gateway's routes; failures are logged by the handlers (one line per 500), not per request."""
    args = {"box": box, "config": config}
    return tornado.web.Application([(r"/images/(.*)", ImageHandler, args), (r"/healthz", HealthHandler, args)],
                                   log_function=lambda handler: None)
