"""`fluxtui serve`: the token, Host and Origin checks of the real server; the served dashboard in
headless Chromium: its header on a screenshot, a real blocked `cat` of a temporary home's key
denied with `d` typed in the browser, a second session refused, the session's dashboard ended
with its tab."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from fluxtui.serve.command import dashboard_command, run_serve
from fluxtui.serve.server import BUSY, GuardedServer
from tests.cdp_support import Browser, chromium_path, png_rows, share_of_color
from tests.guard_support import make_home, require_guard_kernel
from tests.kernel import require

REPO = Path(__file__).resolve().parents[1]
PANEL = (0x1E, 0x26, 0x32)  # fluxtui-dark's $panel: the header's background


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(args: list[str], cwd: Path = REPO) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`fluxtui serve ARGS` in its own process group; yields the URL it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "fluxtui", "serve", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        url = ""
        end = time.monotonic() + 120
        while not url and time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.search(r"open (http://\S+)", line)
            url = found.group(1) if found else ""
        assert url, f"no URL printed (exit {proc.poll()})"
        yield url, proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_only_the_token_the_served_host_and_its_origin_pass() -> None:
    server = GuardedServer("true", "127.0.0.1", 8470, token="tok")

    def why(path: str, **headers: str) -> str | None:
        return server.allowed(make_mocked_request("GET", path, headers={
            "Host": "127.0.0.1:8470", **headers}))

    assert why("/tok/") is None and why("/tok/ws", Origin="http://127.0.0.1:8470") is None
    assert why("/") == why("/ws") == why("/tokx/") == why("/to/") == "no valid token in the URL"
    assert why("/static/js/textual.js") == "no valid token in the URL"
    assert why("/tok/", Host="localhost:8470") == "Host is not the served address"
    assert why("/tok/", Host="evil.example:8470") == "Host is not the served address"
    assert why("/tok/ws", Origin="http://evil.example") == "Origin is not the served address"
    assert why("/tok/ws", Origin="null") == "Origin is not the served address"


def test_tokens_are_random_per_start() -> None:
    a, b = (GuardedServer("true", "127.0.0.1", 1) for _ in range(2))
    assert a.token != b.token and len(a.token) >= 32
    assert a.url == f"http://127.0.0.1:1/{a.token}/"


def test_every_address_is_refused_and_another_one_warns() -> None:
    err = io.StringIO()
    assert run_serve(None, None, "0.0.0.0", free_port(), err=err) == 2
    assert "every address" in err.getvalue()
    err = io.StringIO()
    assert run_serve(None, None, "localhost", free_port(), err=err) == 2
    err = io.StringIO()  # TEST-NET-1: not this machine's, so listening fails after the warning
    assert run_serve(None, None, "192.0.2.1", free_port(), err=err) == 1
    assert "WARNING: listening on 192.0.2.1, not on loopback" in err.getvalue()


def test_the_session_command_is_this_fluxtui_dashboard(tmp_path: Path) -> None:
    command = dashboard_command("c.yml", "fluxtui-contrast", None)
    assert command.startswith(f"{sys.executable} -m fluxtui --config ")
    assert command.endswith(f"{os.path.abspath('c.yml')} --theme fluxtui-contrast")


async def test_the_real_server_answers_403_without_token_host_or_origin() -> None:
    port = free_port()
    with serving(["--port", str(port)]) as (url, _):
        token = url.rstrip("/").rsplit("/", 1)[1]
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                assert page.status == 200
                assert page.headers["Referrer-Policy"] == "no-referrer"
                assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
                assert f"ws://127.0.0.1:{port}/{token}/ws" in await page.text()
            for path in ("/", "/ws", "/static/js/textual.js", f"/{token[:-1]}/"):
                async with http.get(base + path) as response:
                    assert response.status == 403, path
            async with http.get(url, headers={"Host": f"evil.example:{port}"}) as response:
                assert response.status == 403
            for ws_url, origin in ((f"ws://127.0.0.1:{port}/ws", base),
                                   (f"ws://127.0.0.1:{port}/x{token}/ws", base),
                                   (f"ws://127.0.0.1:{port}/{token}/ws", "http://evil.example")):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(ws_url, origin=origin)
                assert refused.value.status == 403


def dashboards(config: Path) -> list[int]:
    """Dashboard processes started for `config` (the served sessions)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if str(config).encode() in argv and b"serve" not in argv and b"-m" in argv:
                pids.append(int(cmdline.parent.name))
    return pids


def marked(path: Path) -> bool:
    inode = path.stat().st_ino
    for fdinfo in Path("/proc").glob("[0-9]*/fdinfo/*"):
        with suppress(OSError):
            for line in fdinfo.read_text().splitlines():
                if line.startswith("fanotify ino:") and \
                        int(line.split()[1].split(":")[1], 16) == inode:
                    return True
    return False


@pytest.mark.kernel
@pytest.mark.timeout(1200)
async def test_the_dashboard_in_chromium_denies_a_real_read_with_d(tmp_path: Path) -> None:
    require_guard_kernel()
    require(chromium_path() is not None, "chromium not installed (make test-setup)")
    home = make_home(tmp_path)
    config = tmp_path / "config.yml"
    # Nobody answering would allow: only the `d` typed in the browser can make the read fail.
    config.write_text(f"guard:\n  homes: [{home.root}]\n  system_files: []\n"
                      f"  default_action: allow\n  decision_timeout: 120\n"
                      f"  rules_file: {tmp_path / 'rules.yml'}\n"
                      f"  audit_db: {tmp_path / 'audit.db'}\n"
                      f"  state_file: {tmp_path / 'inodes.json'}\n")
    config.chmod(0o600)
    port = free_port()
    browser = Browser(tmp_path / "profile")
    reader: subprocess.Popen[bytes] | None = None
    try:
        with serving(["--config", str(config), "--port", str(port)]) as (url, _):
            await browser.open()
            await browser.call("Page.navigate", url=url)
            await browser.wait_for_text("fluxtui", "ROOT", "guard")
            end = time.monotonic() + 300
            while time.monotonic() < end:  # the header band: painted in the theme's panel
                _, _, rows = png_rows(await browser.screenshot())
                if any(share_of_color(r, PANEL) > 0.4 for r in rows[:60]):
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("no header band in the screenshot")
            # The guard runs once the kernel holds its mark on the file (a group's fdinfo).
            end = time.monotonic() + 300
            while not marked(home.aws) and time.monotonic() < end:
                await asyncio.sleep(0.2)
            assert marked(home.aws), "the served dashboard's guard never marked the home"
            # A real read of the decoy key: blocked until the browser answers.
            reader = subprocess.Popen(["cat", str(home.aws)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)
            await browser.wait_for_text("deny", "/usr/bin/cat")
            shot = await browser.screenshot()
            (tmp_path / "serve.png").write_bytes(shot)
            if os.environ.get("FLUXTUI_SERVE_SCREENSHOT"):
                Path(os.environ["FLUXTUI_SERVE_SCREENSHOT"]).write_bytes(shot)
            # A second browser session is refused while this one runs.
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url.replace("http:", "ws:") + "ws",
                                           origin=url.split(f"/{url.split('/')[3]}")[0])
                message = await ws.receive(timeout=60)
                assert message.data == BUSY
                await ws.close()
            end = time.monotonic() + 120
            while reader.poll() is None and time.monotonic() < end:
                await browser.press("d")  # keys in the prompt's first second are ignored
                await asyncio.sleep(0.3)
            assert reader.wait(timeout=10) == 1
            assert b"Operation not permitted" in reader.stderr.read()  # type: ignore[union-attr]
            assert dashboards(config)
            await browser.call("Page.navigate", url="about:blank")  # the tab closes
            end = time.monotonic() + 120
            while dashboards(config) and time.monotonic() < end:
                await asyncio.sleep(0.2)
            assert not dashboards(config), "the session's dashboard outlived its tab"
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
            reader.wait(timeout=30)
        await browser.close()
