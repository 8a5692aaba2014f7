"""`fluxtui serve`: start the guarded server for the dashboard command."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TextIO

from fluxtui.serve.server import GuardedServer, ServeAddressError

LOOPBACK = "127.0.0.1"


def dashboard_command(config: str | None, theme: str | None, log: str | None) -> str:
    """The command textual-serve runs for a session: this fluxtui's dashboard."""
    argv = [sys.executable, "-m", "fluxtui"]
    for flag, value in (("--config", config), ("--theme", theme), ("--log", log)):
        if value is not None:
            argv += [flag, os.path.abspath(value) if flag != "--theme" else value]
    return shlex.join(argv)


def run_serve(config: str | None, theme: str | None, bind: str | None, port: int,
              log: str | None = None, err: TextIO = sys.stderr) -> int:
    try:
        server = GuardedServer(dashboard_command(config, theme, log), bind or LOOPBACK, port)
    except ServeAddressError as exc:
        print(f"fluxtui serve: {exc}", file=err)
        return 2
    if not server.loopback:
        print(f"fluxtui serve: WARNING: listening on {bind}, not on loopback: anyone who can "
              "reach it and learns the URL gets the dashboard and answers the guard's "
              "prompts (plain HTTP: the token crosses the network unencrypted)", file=err)
    if os.geteuid() != 0:
        print("fluxtui serve: not root: the served dashboard runs passive (no eBPF, no guard)",
              file=err)
    try:
        server.serve()
    except OSError as exc:
        print(f"fluxtui serve: cannot listen on {bind or LOOPBACK}:{port}: "
              f"{exc.strerror or exc}", file=err)
        return 1
    return 0
