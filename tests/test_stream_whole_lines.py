"""A document is never cut when a signal interrupts the stream's write to a full pipe (SIGTERM
while the reader is behind: io.BufferedWriter returned a short count and dropped the rest)."""

from __future__ import annotations

import fcntl
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINE_BYTES = 300_000

WRITER = f"""
import signal, sys
from fluxtui.headless import write_whole
signal.signal(signal.SIGTERM, lambda *_: sys.stderr.write("caught\\n"))
sys.stdout.write("ready\\n")
sys.stdout.flush()
write_whole(sys.stdout, ["x" * {LINE_BYTES} + "\\n"])
sys.stdout.flush()
"""


def _pending(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_sigterm_during_a_write_to_a_full_pipe_loses_nothing() -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        capacity = fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ)
        for _ in range(10_000):  # bounded: until the writer is blocked on a full pipe
            if _pending(proc.stdout.fileno()) >= capacity:
                break
            threading.Event().wait(0.001)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert b"caught" in err
    assert out == b"x" * LINE_BYTES + b"\n"
