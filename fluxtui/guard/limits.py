"""How many requests may wait at once, and the open file limit they need."""

from __future__ import annotations

import resource

MAX_PENDING = 1000  # waiting requests at most; beyond, opens are denied at once (reported)
FDS_PER_WAITER = 4  # event fd, pidfd, and what identifying and verifying it may hold open
FD_RESERVE = 64  # fds kept free for everything else (audit database, journal, /proc reads)


def pending_cap() -> int:
    """How many requests may wait at once: each holds fds, and running out of them would make
    the kernel deny every open it cannot hand over (see FanotifyGroup.read_events)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_PENDING
    return max(1, min(MAX_PENDING, (soft - FD_RESERVE) // FDS_PER_WAITER))


def raise_fd_limit() -> str:
    """Raise the soft RLIMIT_NOFILE to the hard limit (waiting opens each hold fds). Returns a
    problem to report, or ""."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                hard = int(f.read())
        except (OSError, ValueError) as exc:
            return f"cannot read /proc/sys/fs/nr_open: {exc}"
    if soft != resource.RLIM_INFINITY and soft >= hard:
        return ""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
    except (OSError, ValueError) as exc:
        return f"cannot raise the open file limit to {hard}: {exc}"
    return ""
