"""Running the HTTP gateway (serve.http) in front of a serving cluster.

`lbdask serve --http` runs it on a thread of its own beside the cluster (`GatewayThread`);
`lbdask gateway` runs only the gateway against a cluster served elsewhere
(`run_until_signalled`), so several gateway processes can stand in front of one cluster.
"""
from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

import tornado.httpserver
import tornado.netutil

from lbdask.errors import ConfigError
from lbdask.serve.client import AsyncServingClient
from lbdask.serve.http import make_app
from lbdask.serve.settings import ServeSettings


def parse_bind(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:8080` for IPv6; port 0 picks a free one) -> (host, port); ConfigError otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--http wants HOST:PORT (e.g. 127.0.0.1:8080), not {text!r}")
    return host, int(port)


async def run_gateway(dest: str, scheduler: str, bind: str, settings: ServeSettings, storage_options: dict | None,
                      stop: asyncio.Event, started: Callable[[str], None]) -> None:
    """Serve HTTP on `bind` until `stop` is set; `started(url)` once it listens."""
    host, port = parse_bind(bind)
    try:
        sockets = tornado.netutil.bind_sockets(port, host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {bind}: {exc.strerror or exc}") from None
    box = await AsyncServingClient.connect(dest, scheduler, storage_options, settings.client)
    server = tornado.httpserver.HTTPServer(make_app(box, settings.http))
    try:
        server.add_sockets(sockets)
        shown = f"[{host}]" if ":" in host else host
        started(f"http://{shown}:{sockets[0].getsockname()[1]}")
        await stop.wait()
    finally:
        server.stop()
        await server.close_all_connections()
        await box.close()


def run_until_signalled(dest: str, scheduler: str, bind: str, settings: ServeSettings,
                        storage_options: dict | None, started: Callable[[str], None]) -> None:
    """`run_gateway` on this thread until SIGTERM or Ctrl-C (`lbdask gateway`)."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_gateway(dest, scheduler, bind, settings, storage_options, stop, started)

    asyncio.run(main())


class GatewayThread:
    """`run_gateway` on a background thread with its own event loop (`lbdask serve --http`)."""

    def __init__(self, dest: str, scheduler: str, bind: str, settings: ServeSettings,
                 storage_options: dict | None) -> None:
        self._args = (dest, scheduler, bind, settings, storage_options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._listening = threading.Event()
        self._url = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="lbdask-http", daemon=True)

    def start(self) -> str:
        """Start it and wait until it listens; its URL. The error of a failed start is raised here."""
        self._thread.start()
        self._listening.wait()
        if self._error is not None:
            raise self._error
        return self._url

    def stop(self) -> None:
        """Stop serving, close the connections and the client, and wait for the thread."""
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def _main(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await run_gateway(*self._args, self._stop, self._started)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it
            self._error = exc
        finally:
            self._listening.set()

    def _started(self, url: str) -> None:
        self._url = url
        self._listening.set()
