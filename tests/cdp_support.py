"""Headless Chromium driven through the DevTools protocol (a websocket, aiohttp's client): load a
page, read what its terminal websocket received, take a screenshot, type keys.

The page's websocket traffic is recorded by a script injected before the page's own (a wrapper
around `WebSocket` that appends each binary message, decoded as UTF-8, to `window.__fluxBytes`),
so a test reads the exact bytes the served dashboard sent to the browser's terminal.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp

RECORDER = """
(() => {
  const Native = window.WebSocket;
  window.__fluxBytes = "";
  const decoder = new TextDecoder();
  window.WebSocket = function (url, protocols) {
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") {
        window.__fluxBytes += decoder.decode(new Uint8Array(event.data), {stream: true});
      }
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
})();
"""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, profile: Path, width: int = 1280, height: int = 800) -> None:
        binary = chromium_path()
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        self.session: aiohttp.ClientSession | None = None
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    def devtools_url(self, timeout: float = 120.0) -> str:
        assert self.proc.stderr is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.proc.stderr.readline()
            if not line:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError("chromium did not start its DevTools endpoint")

    async def open(self) -> None:
        browser_ws = await asyncio.to_thread(self.devtools_url)
        port = int(re.search(r":(\d+)/", browser_ws).group(1))  # type: ignore[union-attr]
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        self.socket = await self.session.ws_connect(page["webSocketDebuggerUrl"],
                                                    max_msg_size=0)
        await self.call("Page.enable")
        await self.call("Page.addScriptToEvaluateOnNewDocument", source=RECORDER)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.socket is not None
        ident = next(self._ids)
        await self.socket.send_str(json.dumps({"id": ident, "method": method,
                                               "params": params}))
        while True:
            message = await asyncio.wait_for(self.socket.receive(), timeout=120)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"DevTools connection ended: {message}")
            data = json.loads(message.data)
            if data.get("id") == ident:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                return dict(data.get("result", {}))

    async def found(self, needles: tuple[str, ...]) -> tuple[bool, str]:
        """Whether the terminal received every needle (escape sequences removed, in the page:
        the stream grows to megabytes), and its last 2,000 characters."""
        expression = (
            "(() => { const t = (window.__fluxBytes || '').replace("
            r"/\x1b\[[0-9;?<>=]*[ -\/]*[@-~]/g, ''); "
            f"return [{json.dumps(list(needles))}.every(n => t.includes(n)), "
            "t.slice(-2000)]; })()")
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        ok, tail = result.get("result", {}).get("value", [False, ""])
        return bool(ok), str(tail)

    async def wait_for_text(self, *needles: str, timeout: float = 300.0) -> str:
        end = time.monotonic() + timeout  # a bound for a broken page, not a pause
        tail = ""
        while time.monotonic() < end:
            ok, tail = await self.found(needles)
            if ok:
                return tail
            await asyncio.sleep(0.2)
        raise AssertionError(f"{needles} never reached the browser; it got:\n{tail}")

    async def screenshot(self) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])

    async def press(self, key: str) -> None:
        """Type one letter into the terminal (xterm reads keys from its focused textarea)."""
        await self.call("Runtime.evaluate", expression=(
            "document.querySelector('.xterm-helper-textarea')?.focus()"))
        code = {"windowsVirtualKeyCode": ord(key.upper()), "code": f"Key{key.upper()}"}
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key, **code)
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key, **code)

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.session is not None:
            await self.session.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 30)


def png_rows(data: bytes) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """(width, height, rows of RGB pixels) of an 8-bit RGB/RGBA, non-interlaced PNG (what
    Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[list[tuple[int, int, int]]] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append([(line[x], line[x + 1], line[x + 2]) for x in range(0, stride, channels)])
        previous = line
    return width, height, rows


def share_of_color(row: list[tuple[int, int, int]], color: tuple[int, int, int],
                   tolerance: int = 10) -> float:
    close = sum(1 for p in row
                if all(abs(a - b) <= tolerance for a, b in zip(p, color, strict=False)))
    return close / max(1, len(row))
