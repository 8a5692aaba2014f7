"""The malloc policy of fluxtui's processes (fluxtui/malloc_policy.py): a large block freed after
a larger one goes back to the system instead of staying resident in the heap, and the command
line applies the policy before anything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui import cli, malloc_policy

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import ctypes, json, sys
from pathlib import Path
from fluxtui import malloc_policy
applied = malloc_policy.apply() if sys.argv[1] == "policy" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def anon_kb():
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith("RssAnon:"))
MB = 1 << 20
big = libc.malloc(24 * MB)  # mmapped; freeing it raises glibc's threshold to 24 MiB
ctypes.memset(big, 1, 24 * MB)
libc.free(big)
before = anon_kb()
block = libc.malloc(16 * MB)  # a matrix of a busy tick
ctypes.memset(block, 1, 16 * MB)
pinned = [libc.malloc(64) for _ in range(64)]  # small objects allocated after it, still live
libc.free(block)
print(json.dumps({"applied": applied, "kept_kb": anon_kb() - before}))
"""


def _kept_kb(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         timeout=60, cwd=REPO, check=True)
    return json.loads(out.stdout)


def test_a_freed_block_goes_back_to_the_system() -> None:
    default = _kept_kb("default")
    assert default["kept_kb"] >= 12 * 1024, default  # the glibc behaviour the policy fixes
    policy = _kept_kb("policy")
    assert policy["applied"] is True
    assert policy["kept_kb"] < 4 * 1024, policy


def test_the_command_line_applies_the_policy_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(malloc_policy, "apply", lambda: calls.append("apply") or True)
    assert cli.main(["--stream-max-mb", "0"]) == 2  # a usage error: nothing else ran
    assert calls == ["apply"]
