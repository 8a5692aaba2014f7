"""The demo's watchdog: removes the demo's processes and files when the demo dies, even by
SIGKILL.

Started by the demo in a session of its own, with a pipe as stdin whose only writer is the demo:
when the demo ends, however it ends, the kernel closes the pipe and the read below returns.
Then every process in the demo's cgroup is killed and the cgroup and the temporary tree (found
by its marker) are removed. A demo that ends normally has already done this; the watchdog then
finds nothing left.

    python -m fluxtui.demo_mode.watchdog CGROUP_DIR TEMP_DIR
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from fluxtui.evaluation.sandbox import kill_cgroup, remove_cgroup, remove_temp_dir


def clean(cgroup: Path, temp: Path) -> None:
    if cgroup.is_dir():
        kill_cgroup(cgroup)
        remove_cgroup(cgroup)
    remove_temp_dir(temp)  # only with the owner marker inside


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m fluxtui.demo_mode.watchdog CGROUP_DIR TEMP_DIR", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the pipe's end ends the watch
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    clean(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
