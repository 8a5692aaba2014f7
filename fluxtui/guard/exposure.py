"""What the kernel lets other processes of a user do to a program the guard allowed.

An allowed open is decided once; afterwards the reader's open file and memory belong to it. Any
process of the same user that may ptrace it (PTRACE_MODE_ATTACH) can take a duplicate of its
file descriptor with pidfd_getfd(2) (no new open: no fanotify event) or read its memory through
/proc/PID/mem, process_vm_readv or ptrace. Only Yama's ptrace_scope 2 or 3 (attach by
CAP_SYS_PTRACE only, or never), or an LSM policy, keeps a user's processes from doing so; scope
1 does not help here, since the attacker starts the allowed program as its own child.
"""

from __future__ import annotations

YAMA_SCOPE = "/proc/sys/kernel/yama/ptrace_scope"


def ptrace_exposure(path: str = YAMA_SCOPE) -> str:
    """A sentence for the guard's problems when other processes of a reader's user can reach an
    allowed reader's open key (pidfd_getfd) and memory; "" when Yama forbids it."""
    try:
        with open(path) as f:
            scope = int(f.read().strip())
    except FileNotFoundError:
        setting = "this kernel has no Yama"
    except (OSError, ValueError) as exc:
        setting = f"Yama ptrace_scope unreadable ({exc})"
    else:
        if scope >= 2:
            return ""
        setting = f"Yama ptrace_scope is {scope}"
    return (f"{setting}: any process of the same user can take an allowed reader's open key "
            "(pidfd_getfd) or read its memory; set kernel.yama.ptrace_scope=2 to prevent it")
