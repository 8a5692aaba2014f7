"""The kernel's BTF is read without a Python object per type (issue 13: one tuple per type held
17 MB at every load, and the arenas they were in stayed resident)."""

from __future__ import annotations

import tracemalloc

import pytest

from fluxtui.collectors import btf as kbtf
from tests.kernel import require

pytestmark = pytest.mark.kernel


def test_reading_the_kernels_btf_holds_little_beyond_the_file() -> None:
    require(kbtf.BTF_PATH.exists(), f"no kernel BTF at {kbtf.BTF_PATH}")
    size = len(kbtf.BTF_PATH.read_bytes())
    tracemalloc.start()
    try:
        offsets = kbtf.kernel_offsets(kbtf.Btf.load())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert offsets["task_tgid"] > 0 and offsets["cred_euid"] > 0
    assert set(offsets) >= set(kbtf.BTF_MEMBERS)
    assert peak - size < 4 * 1024 * 1024, (peak, size)  # a tuple per type: about 23 MB more
