"""textual-serve's server with what a security tool needs in front of it.

- Every path is below `/<token>/`, a random token made at each start: a request without it gets
  403, on the page, the static files and the websocket alike (compared in constant time).
- The Host header must be the served address and an Origin, when sent, its origin: another
  name for the same socket (DNS rebinding) or a page of another site opening the websocket
  gets 403.
- One session at a time: textual-serve starts a new dashboard process (collectors, guard) for
  each websocket; a second one is refused with a message in its terminal, and the session's
  process lives as long as its websocket (closing the tab stops it).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BUSY = (b"\r\n fluxtui serve: another browser session is running.\r\n"
        b" One session at a time: close the other tab (its dashboard stops), then reload.\r\n")


async def _private_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The token is in the page's URL: never sent on as a Referer (the page loads a web font
    from another site), never cached, never framed by another page (keys typed into it would
    answer the guard)."""
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"


class ServeAddressError(Exception):
    """The address to listen on cannot be served safely; phrased for the user."""


def served_address(bind: str) -> tuple[str, bool]:
    """(the address as it appears in a URL's host, whether it is loopback)."""
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        raise ServeAddressError(f"--bind: expected an IP address, got {bind!r}") from None
    if address.is_unspecified:
        raise ServeAddressError(
            f"--bind: {bind} is every address; give the one browsers will use (the Host they "
            "send is checked against it)")
    host = f"[{address}]" if address.version == 6 else str(address)
    return host, address.is_loopback


class GuardedServer(Server):
    def __init__(self, command: str, bind: str, port: int, token: str | None = None) -> None:
        self.url_host, self.loopback = served_address(bind)
        super().__init__(command, host=bind, port=port, title="fluxtui",
                         public_url=f"http://{self.url_host}:{port}")
        self.token = token or secrets.token_urlsafe(24)
        self.authority = f"{self.url_host}:{port}"
        self.origin = f"http://{self.authority}"
        self.session_open = False
        self.refused_sessions = 0

    @property
    def url(self) -> str:
        return f"{self.origin}/{self.token}/"

    def allowed(self, request: web.Request) -> str | None:
        """None when the request may go on, else why it gets 403."""
        prefix = request.path.split("/", 2)[1] if request.path.startswith("/") else ""
        if not hmac.compare_digest(prefix.encode(), self.token.encode()):
            return "no valid token in the URL"
        if request.headers.get("Host") != self.authority:
            return "Host is not the served address"
        origin = request.headers.get("Origin")
        if origin is not None and origin != self.origin:
            return "Origin is not the served address"
        return None

    @web.middleware
    async def check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        why = self.allowed(request)
        if why is not None:
            log.warning("refused %s %s: %s", request.method, request.path[:80], why)
            raise web.HTTPForbidden(text=f"fluxtui serve: forbidden ({why})\n")
        return await handler(request)

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.check])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        base = f"/{self.token}"
        app.add_routes([
            web.get(f"{base}/", self.handle_index, name="index"),
            web.get(f"{base}/ws", self.handle_websocket, name="websocket"),
            web.static(f"{base}/static", self.statics_path, name="static"),
        ])
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        app.on_response_prepare.append(_private_headers)
        return app

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        if self.session_open:
            self.refused_sessions += 1
            websocket = web.WebSocketResponse()
            await websocket.prepare(request)
            await websocket.send_bytes(BUSY)
            await websocket.close()
            return websocket
        self.session_open = True
        try:
            return await super().handle_websocket(request)
        finally:
            self.session_open = False

    async def on_startup(self, app: web.Application) -> None:
        """Nothing: the URL is printed once the socket listens (`_serve`)."""

    def serve(self, debug: bool = False) -> None:
        """Listen, print the URL, serve until SIGINT or SIGTERM; then every session ends (its
        dashboard is told to quit and waited for). OSError when the address cannot be used."""
        self.debug = debug
        self.initialize_logging()
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        runner = web.AppRunner(await self._make_app(), handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            print(f"fluxtui serve: open {self.url}", flush=True)
            print("One browser session at a time; closing its tab stops its collectors and "
                  "guard. Ctrl+C stops the server.", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()
