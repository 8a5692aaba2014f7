"""Compiling the BPF C in bpf_programs/ with BCC.

BCC's compiler is not thread-safe: two compiles at once crash the process, so every compile in
fluxtui goes through `compile_program`, one at a time. Sources are found in the source tree, or
in the copy `pip install` puts under <prefix>/share/fluxtui/bpf_programs.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

_COMPILE_LOCK = threading.Lock()


def program_dir() -> Path:
    tree = Path(__file__).resolve().parents[2] / "bpf_programs"
    if tree.is_dir():
        return tree
    return Path(sys.prefix) / "share" / "fluxtui" / "bpf_programs"


def program_path(name: str) -> Path:
    return program_dir() / name


def compile_program(name: str, cflags: list[str]) -> Any:
    """A loaded (and, for TRACEPOINT_PROBE, attached) `bcc.BPF` of bpf_programs/`name`; the
    directory is on the include path for the shared header."""
    from bcc import BPF  # bcc is optional and slow to import

    directory = program_dir()
    with _COMPILE_LOCK:
        return BPF(src_file=str(directory / name).encode(),
                   cflags=[f"-I{directory}", *cflags])
