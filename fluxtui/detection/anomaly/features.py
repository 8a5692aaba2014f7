"""Feature windows and their fixed numeric layout.

A `FeatureWindow` is what one process did during one engine tick: calls by syscall number, the
syscall bigrams the kernel counted, and the high-signal findings the rules raised. Numbers, not
names, are kept: a syscall's number is fixed by the kernel ABI, so a position never shifts when a
name is spelled differently or a newer syscall is added to the table.

`feature_matrix` turns windows into rows of `N_FEATURES` floats, the same layout for every
machine of one architecture (`FEATURE_SCHEMA` names it):

- `[0, NATIVE_SLOTS)`: share of the window's calls made to syscall number i;
- `COMPAT_SLOT`: share made through the 32-bit interface (all numbers together);
- `OTHER_SLOT`: share to numbers at or past NATIVE_SLOTS (and the kernel's out-of-range marker);
- `BIGRAM_BASE + bucket(a, b)`: share of bigrams (previous syscall, syscall), hashed into
  `BIGRAM_BUCKETS` buckets by a fixed integer mix;
- `SCALAR_BASE + …`: log(1 + calls/s), log(1 + distinct syscalls), log(1 + distinct bigrams);
- `EVENT_BASE + …`: log(1 + findings) per group of rules (`EVENT_GROUPS`).

Shares and per-second rates are what make a process that lived 0.2 s comparable to one that ran
all window: neither depends on how long the process lived.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING

from fluxtui.collectors.bpf_structs import COMPAT_PREFIX, FX_MAX_NR, FX_NR_OTHER, FX_NR_START
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.events import ProcessKey

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1
NATIVE_SLOTS = 512  # x86_64 and arm64 number their syscalls below 512
COMPAT_SLOT = NATIVE_SLOTS
OTHER_SLOT = NATIVE_SLOTS + 1
BIGRAM_BASE = NATIVE_SLOTS + 2
BIGRAM_BUCKETS = 256
SCALAR_BASE = BIGRAM_BASE + BIGRAM_BUCKETS
SCALARS = ("log calls/s", "log distinct syscalls", "log distinct bigrams")
EVENT_BASE = SCALAR_BASE + len(SCALARS)
# Rule ids (without "syscalls.") grouped into one feature each; a rule not listed counts as other.
EVENT_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("ptrace", frozenset({"ptrace_traceme", "ptrace_attach", "ptrace_write",
                          "process_vm_write"})),
    ("exec from writable or hidden place", frozenset({"exec_tmp", "exec_memfd",
                                                      "exec_deep_path"})),
    ("shell spawn", frozenset({"shell_spawn"})),
    ("privilege change", frozenset({"uid_root", "gid_root", "exec_setuid_root"})),
    ("memfd", frozenset({"memfd_create"})),
    ("module load", frozenset({"module_load"})),
    ("bpf load", frozenset({"bpf_prog_load"})),
    ("namespace or mount", frozenset({"container_escape"})),
    ("32-bit syscall", frozenset({"compat_syscall"})),
    ("other finding", frozenset()),
)
N_FEATURES = EVENT_BASE + len(EVENT_GROUPS)
FEATURE_SCHEMA = (f"fluxtui-anomaly/{SCHEMA_VERSION} {platform.machine()} "
                  f"native={NATIVE_SLOTS} bigrams={BIGRAM_BUCKETS} features={N_FEATURES}")

_GROUP_OF = {rule: i for i, (_, rules) in enumerate(EVENT_GROUPS) for rule in rules}
_OTHER_GROUP = len(EVENT_GROUPS) - 1


@dataclass(frozen=True, slots=True)
class FeatureWindow:
    """One process during one window. `counts` and `bigrams` are keyed by the kernel's syscall
    numbers (32-bit calls as FX_MAX_NR + their number, FX_NR_START before the first call seen);
    `events` counts findings by rule id ("syscalls.ptrace_attach")."""

    key: ProcessKey
    exe: str  # "" when not known
    window_s: float
    counts: Mapping[int, int]
    bigrams: Mapping[tuple[int, int], int] = field(default_factory=dict)
    events: Mapping[str, int] = field(default_factory=dict)
    recorded_at: float = 0.0  # wall clock, for the training period shown in the model's metadata

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def bigram_bucket(a: int, b: int) -> int:
    """A fixed mix of the two numbers (not Python's hash(), which is salted per process)."""
    h = ((a * 0x9E3779B1) ^ (b * 0x85EBCA77)) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
    h ^= h >> 12
    return h % BIGRAM_BUCKETS


def syscall_slot(nr: int) -> int:
    if 0 <= nr < NATIVE_SLOTS:
        return nr
    if FX_MAX_NR <= nr < 2 * FX_MAX_NR:
        return COMPAT_SLOT
    return OTHER_SLOT


class SyscallNumbers:
    """Syscall names as the capture reports them -> the kernel's numbers, and back."""

    def __init__(self, table: SyscallTable) -> None:
        self.table = table
        self._cache: dict[str | int, int] = {"(start)": FX_NR_START,
                                             "(out of range)": FX_NR_OTHER}

    def number(self, name: str | int) -> int:
        """A name as SyscallView spells it; a number (a capture that reports numbers) as is."""
        nr = self._cache.get(name)
        if nr is None:
            nr = name if isinstance(name, int) else self._resolve(name)
            self._cache[name] = nr
        return nr

    def _resolve(self, name: str) -> int:
        compat = name.startswith(COMPAT_PREFIX)
        bare = name.removeprefix(COMPAT_PREFIX)
        nr = (self.table.compat_numbers if compat else self.table.numbers).get(bare)
        if nr is None and bare.startswith("syscall_") and bare[8:].isdigit():
            nr = int(bare[8:])
        if nr is None:
            return FX_NR_OTHER
        return FX_MAX_NR + nr if compat else nr

    def name(self, nr: int) -> str:
        return self.table.name(nr)


def window_from_names(key: ProcessKey, exe: str, window_s: float, counts: Mapping[str, int],
                      bigrams: Mapping[tuple[str, str], int], events: Mapping[str, int],
                      numbers: SyscallNumbers, recorded_at: float = 0.0) -> FeatureWindow:
    """The window of one process from the capture's named counts (every tick, for every
    process: plain dict lookups, names resolved once and cached)."""
    cache = numbers._cache
    try:
        by_nr = {cache[name]: n for name, n in counts.items()}
        pairs = {(cache[a], cache[b]): n for (a, b), n in bigrams.items()}
    except KeyError:  # a name not seen before: resolve every name once, then retry
        for name in {*counts, *(x for pair in bigrams for x in pair)}:
            numbers.number(name)
        by_nr = {cache[name]: n for name, n in counts.items()}
        pairs = {(cache[a], cache[b]): n for (a, b), n in bigrams.items()}
    if len(by_nr) != len(counts):  # two names for one number: add them up
        by_nr = {}
        for name, n in counts.items():
            by_nr[cache[name]] = by_nr.get(cache[name], 0) + n
    if len(pairs) != len(bigrams):
        pairs = {}
        for (a, b), n in bigrams.items():
            pair = (cache[a], cache[b])
            pairs[pair] = pairs.get(pair, 0) + n
    return FeatureWindow(key, exe, window_s, by_nr, pairs, dict(events), recorded_at)


def bigram_buckets(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`bigram_bucket` over arrays (the same numbers: tests compare them)."""
    import numpy as np

    mask = np.uint64(0xFFFFFFFF)
    h = ((a.astype(np.uint64) * np.uint64(0x9E3779B1)) ^ (b.astype(np.uint64)
                                                          * np.uint64(0x85EBCA77))) & mask
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & mask
    h ^= h >> np.uint64(12)
    return (h % np.uint64(BIGRAM_BUCKETS)).astype(np.int64)


def feature_matrix(windows: Sequence[FeatureWindow]) -> np.ndarray:
    """Rows of N_FEATURES floats (float64), one per window, in the fixed layout above.
    Flattened with list.extend and computed with numpy: no Python work per syscall."""
    import numpy as np

    n = len(windows)
    nrs: list[int] = []
    calls: list[int] = []
    pairs: list[tuple[int, int]] = []
    pair_calls: list[int] = []
    rules: list[int] = []
    rule_counts: list[int] = []
    group_of = _GROUP_OF
    for w in windows:
        nrs.extend(w.counts.keys())
        calls.extend(w.counts.values())
        pairs.extend(w.bigrams.keys())
        pair_calls.extend(w.bigrams.values())
        if w.events:
            rules.extend(group_of.get(r.removeprefix("syscalls."), _OTHER_GROUP)
                         for r in w.events)
            rule_counts.extend(w.events.values())
    sizes = np.array([(len(w.counts), len(w.bigrams), len(w.events)) for w in windows],
                     dtype=np.int64).reshape(n, 3)
    window_s = np.array([w.window_s for w in windows], dtype=np.float64)
    index = np.arange(n)
    count_rows = np.repeat(index, sizes[:, 0])
    values = np.asarray(calls, dtype=np.float64)
    totals = np.bincount(count_rows, weights=values, minlength=n)
    nr = np.asarray(nrs, dtype=np.int64)
    slots = np.where((nr >= 0) & (nr < NATIVE_SLOTS), nr,
                     np.where((nr >= FX_MAX_NR) & (nr < 2 * FX_MAX_NR), COMPAT_SLOT, OTHER_SLOT))
    pair_rows = np.repeat(index, sizes[:, 1])
    ab = np.fromiter(chain.from_iterable(pairs), dtype=np.int64, count=2 * len(pairs))
    pv = np.asarray(pair_calls, dtype=np.float64)
    pair_totals = np.bincount(pair_rows, weights=pv, minlength=n)
    event_rows = np.repeat(index, sizes[:, 2])
    rate = np.divide(totals, window_s, out=np.zeros(n), where=window_s > 0)
    # One bincount over every (row, column) cell: repeated cells (compat, other, bigrams sharing
    # a bucket, rules of one group) add up.
    cells = np.concatenate([
        count_rows * N_FEATURES + slots,
        pair_rows * N_FEATURES + BIGRAM_BASE + bigram_buckets(ab[0::2], ab[1::2]),
        event_rows * N_FEATURES + EVENT_BASE + np.asarray(rules, dtype=np.int64),
        index * N_FEATURES + SCALAR_BASE, index * N_FEATURES + SCALAR_BASE + 1,
        index * N_FEATURES + SCALAR_BASE + 2])
    weights = np.concatenate([
        values / np.maximum(totals, 1)[count_rows], pv / np.maximum(pair_totals, 1)[pair_rows],
        np.asarray(rule_counts, dtype=np.float64), rate, sizes[:, 0], sizes[:, 1]])
    matrix = np.bincount(cells, weights=weights, minlength=n * N_FEATURES).astype(
        np.float64, copy=False).reshape(n, N_FEATURES)
    np.log1p(matrix[:, SCALAR_BASE:], out=matrix[:, SCALAR_BASE:])
    return matrix


def feature_name(index: int, name: Callable[[int], str] | None = None) -> str:
    """What column `index` measures, for reasons shown to the user."""
    if 0 <= index < NATIVE_SLOTS:
        return f"share of calls to {name(index) if name is not None else f'syscall {index}'}"
    if index == COMPAT_SLOT:
        return "share of 32-bit calls"
    if index == OTHER_SLOT:
        return "share of calls to unknown numbers"
    if BIGRAM_BASE <= index < SCALAR_BASE:
        return f"share of bigram bucket {index - BIGRAM_BASE}"
    if SCALAR_BASE <= index < EVENT_BASE:
        return SCALARS[index - SCALAR_BASE]
    if EVENT_BASE <= index < N_FEATURES:
        return f"findings: {EVENT_GROUPS[index - EVENT_BASE][0]}"
    raise IndexError(index)


def describe_value(index: int, value: float) -> str:
    """A feature value in the unit a person reads (shares as percent, logs undone)."""
    if index < SCALAR_BASE:
        return f"{value * 100:.0f}%"
    return f"{math.expm1(value):,.0f}"
