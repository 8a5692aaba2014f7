"""glibc malloc settings for fluxtui's long-running processes (issue 13: the dashboard's resident
memory), applied once at start, before any thread exists.

By default glibc gives each thread that allocates its own arena (up to 8 per core) and raises its
mmap threshold each time a large block is freed (up to 32 MiB): after the first freed numpy
matrix or BPF map batch, blocks of a few MiB come from the arenas, and what is freed there stays
resident wherever a small live object sits above it. Measured on this machine with every
collector on (bench/bench_memory.py runs side by side, 90 s in): 119 MB resident with the
defaults, 84 MB with these settings. With the GIL, threads seldom allocate at the same time, so
one arena costs no measurable contention here.

- M_ARENA_MAX 1: every thread allocates from the main arena;
- M_MMAP_THRESHOLD 128 KiB, fixed: a larger block is its own mapping, returned when freed;
- M_TRIM_THRESHOLD 128 KiB, fixed: free memory at the top of the heap past that is returned.

Only glibc has mallopt; elsewhere (musl) nothing is changed and `apply` says so.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, 128 * 1024), (M_TRIM_THRESHOLD, 128 * 1024))


def apply() -> bool:
    """Apply SETTINGS; False when this C library has no mallopt or refused one of them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
