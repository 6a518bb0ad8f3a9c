"""A webhook receiver on 127.0.0.1 for the alert tests: what apprise's json:// posts arrives here.

Modes: "ok" answers 200; "fail" answers 500; "slow" takes the request and answers only when the
test releases it (never, within the test: the sender's timeout decides). `arrived(n)` waits for
the n-th post, without sleeping."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from aiohttp import web


class Receiver:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.posts: list[dict[str, Any]] = []  # bodies of the posts answered 2xx
        self.requests = 0  # every request, whatever the answer
        self.raw: list[str] = []  # every request's path, query and body
        self._changed = asyncio.Event()
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests += 1
        self.raw.append(f"{request.path_qs} {request.headers.get('Authorization', '')} {body}")
        self._changed.set()
        if self.mode == "slow":
            await self.release.wait()
        if self.mode == "fail":
            return web.Response(status=500, text="boom")
        self.posts.append(json.loads(body))
        self._changed.set()
        return web.Response(text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    async def arrived(self, posts: int = 0, requests: int = 0, timeout: float = 20) -> None:
        """Wait until at least `posts` posts were answered 2xx and `requests` were made."""
        async def wait() -> None:
            while len(self.posts) < posts or self.requests < requests:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


def refused_port() -> tuple[socket.socket, int]:
    """A port bound on 127.0.0.1 but not listening: a connection to it is refused, and no
    other process can take it while the socket is held."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]
