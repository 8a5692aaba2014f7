"""BpfMap.pop_all_packed on a real kernel map: every entry back, in batches, with its buffers
made once (they were three megabytes zero-filled at every tick for the count maps)."""

from __future__ import annotations

import ctypes as ct
import struct

import pytest

from fluxtui.collectors import bpf_maps
from fluxtui.collectors.bpf_maps import POP_BATCH, BpfMap, bpf
from tests.kernel import require_root

pytestmark = pytest.mark.kernel

BPF_MAP_CREATE = 0
BPF_MAP_TYPE_HASH = 1


class _CreateAttr(ct.Structure):
    _fields_ = [("map_type", ct.c_uint32), ("key_size", ct.c_uint32),
                ("value_size", ct.c_uint32), ("max_entries", ct.c_uint32)]


def _hash_map(entries: int) -> BpfMap:
    fd = bpf(BPF_MAP_CREATE, _CreateAttr(BPF_MAP_TYPE_HASH, 16, 8, entries))
    return BpfMap(fd, "test_counts")


def test_pop_all_takes_every_entry_across_batches_and_reuses_its_buffers() -> None:
    require_root()
    count = 3 * POP_BATCH + 123  # several batch calls
    counts = _hash_map(4 * POP_BATCH)
    try:
        for i in range(count):
            counts.update(struct.pack("<IHHQ", i, 1, 2, 7), i * 3)
        made = 0
        real = bpf_maps.ct.create_string_buffer

        def counting(*args: object) -> object:
            nonlocal made
            made += 1
            return real(*args)  # type: ignore[arg-type]

        bpf_maps.ct.create_string_buffer = counting  # type: ignore[assignment]
        try:
            keys, values = counts.pop_all_packed()
            again = counts.pop_all_packed()
        finally:
            bpf_maps.ct.create_string_buffer = real
        taken = {struct.unpack_from("<I", keys, i * 16)[0]:
                 struct.unpack_from("<Q", values, i * 8)[0] for i in range(len(keys) // 16)}
        assert taken == {i: i * 3 for i in range(count)}
        assert again == (b"", b"")  # every entry was deleted as it was read
        assert made <= 4  # the buffers of the first call, none for the second
    finally:
        counts.close()
