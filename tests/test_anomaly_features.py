"""The anomaly model's feature layout is fixed: a syscall's column is its number, bigrams land in
the same bucket on every run and machine, and a process's row does not depend on how long it
lived (shares and per-second rates)."""

from __future__ import annotations

import numpy as np

from fluxtui.collectors.bpf_structs import FX_MAX_NR, FX_NR_OTHER, FX_NR_START
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.detection.anomaly import features as f
from fluxtui.detection.anomaly.features import (
    FeatureWindow,
    SyscallNumbers,
    bigram_bucket,
    bigram_buckets,
    feature_matrix,
    window_from_names,
)
from fluxtui.events import ProcessKey

KEY = ProcessKey(100, 200)
TABLE = SyscallTable({0: "read", 1: "write", 59: "execve", 101: "ptrace", 257: "openat"},
                     {26: "ptrace"})


def test_the_layout_is_fixed() -> None:
    # Changing any of these changes FEATURE_SCHEMA's meaning: models and stores written with the
    # old layout would be read wrongly. Bump SCHEMA_VERSION instead.
    assert (f.NATIVE_SLOTS, f.COMPAT_SLOT, f.OTHER_SLOT) == (512, 512, 513)
    assert (f.BIGRAM_BASE, f.BIGRAM_BUCKETS, f.SCALAR_BASE, f.EVENT_BASE) == (514, 256, 770, 773)
    assert f.N_FEATURES == 783
    assert f.FEATURE_SCHEMA.startswith("fluxtui-anomaly/1 ")
    assert f.FEATURE_SCHEMA.endswith(" native=512 bigrams=256 features=783")
    # The bucket of a bigram is a fixed integer mix, not Python's salted hash().
    assert [bigram_bucket(0, 1), bigram_bucket(257, 0), bigram_bucket(FX_NR_START, 59)] == [
        127, 140, 172]


def test_vectorised_buckets_equal_the_scalar_function() -> None:
    a = np.arange(0, 2 * FX_MAX_NR, 7)
    b = (a * 13 + 5) % (2 * FX_MAX_NR)
    expected = [bigram_bucket(int(x), int(y)) for x, y in zip(a, b, strict=True)]
    assert bigram_buckets(a, b).tolist() == expected


def test_a_syscall_column_is_its_number() -> None:
    numbers = SyscallNumbers(TABLE)
    w = window_from_names(KEY, "/usr/bin/x", 1.0,
                          {"openat": 3, "read": 1, "compat:ptrace": 2, "(out of range)": 1,
                           "syscall_600": 1, "syscall_300": 1},
                          {("(start)", "openat"): 1, ("openat", "read"): 2}, {}, numbers)
    assert w.counts == {257: 3, 0: 1, FX_MAX_NR + 26: 2, FX_NR_OTHER: 1, 600: 1, 300: 1}
    assert w.bigrams == {(FX_NR_START, 257): 1, (257, 0): 2}
    row = feature_matrix([w])[0]
    assert row[257] == 3 / 9 and row[0] == 1 / 9 and row[300] == 1 / 9
    assert row[f.COMPAT_SLOT] == 2 / 9
    assert row[f.OTHER_SLOT] == 2 / 9  # the out-of-range marker and a number past the layout
    assert row[f.BIGRAM_BASE + bigram_bucket(257, 0)] == 2 / 3
    assert row[f.SCALAR_BASE] == np.log1p(9.0)  # calls per second
    assert row[f.SCALAR_BASE + 1] == np.log1p(6) and row[f.SCALAR_BASE + 2] == np.log1p(2)
    assert numbers.name(FX_MAX_NR + 26) == "compat:ptrace"
    assert numbers.number(101) == 101 == numbers.number("ptrace")  # a capture giving numbers


def test_findings_count_in_their_rule_group() -> None:
    w = FeatureWindow(KEY, "", 1.0, {101: 1},
                      events={"syscalls.ptrace_attach": 2, "syscalls.ptrace_write": 1,
                              "syscalls.some_future_rule": 1})
    row = feature_matrix([w])[0]
    assert row[f.EVENT_BASE] == np.log1p(3)  # the ptrace group
    assert row[f.N_FEATURES - 1] == np.log1p(1)  # "other finding"


def test_short_and_long_lived_processes_compare() -> None:
    """The same mix at the same rate gives the same row, whether the window held 0.2 s or 2 s
    of the process's life; rows of a batch do not influence each other."""
    short = FeatureWindow(KEY, "/usr/bin/x", 0.2, {0: 20, 1: 10}, {(0, 1): 10, (1, 0): 20})
    long = FeatureWindow(ProcessKey(101, 1), "/usr/bin/x", 2.0, {0: 200, 1: 100},
                         {(0, 1): 100, (1, 0): 200})
    other = FeatureWindow(ProcessKey(102, 1), "/usr/bin/y", 1.0, {59: 1})
    m = feature_matrix([short, other, long])
    assert np.array_equal(m[0], m[2])
    assert np.array_equal(feature_matrix([other])[0], m[1])


def test_an_empty_batch_and_a_window_without_calls() -> None:
    assert feature_matrix([]).shape == (0, f.N_FEATURES)
    row = feature_matrix([FeatureWindow(KEY, "", 0.0, {})])[0]
    assert not row.any()


def test_two_names_for_one_number_add_up() -> None:
    numbers = SyscallNumbers(TABLE)
    w = window_from_names(KEY, "", 1.0, {"ptrace": 2, "syscall_101": 3, 101: 1},
                          {("ptrace", "read"): 1, ("syscall_101", "read"): 2}, {}, numbers)
    assert w.counts == {101: 6} and w.bigrams == {(101, 0): 3}
