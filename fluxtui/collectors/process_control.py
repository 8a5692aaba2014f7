"""Signalling a process without hitting a different process that reused its PID."""

from __future__ import annotations

import os
import signal

from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.events import ProcessKey


class ProcessGone(Exception):
    """The process exited (its PID may now belong to another process)."""


def send_signal(key: ProcessKey, sig: signal.Signals) -> None:
    """Signal exactly the process `key` names. A pidfd pins the process: once it is open and the
    start time matches, the signal cannot reach a process that reused the PID."""
    try:
        pidfd = os.pidfd_open(key.pid)
    except ProcessLookupError:
        raise ProcessGone(f"process {key.pid} has exited") from None
    try:
        if read_start_ticks(key.pid) != key.start_ticks:
            raise ProcessGone(f"process {key.pid} has exited; the PID now names another process")
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise ProcessGone(f"process {key.pid} has exited") from None
    finally:
        os.close(pidfd)
