"""The stream's cheap paths: `iso_time` gives exactly datetime's text, and a batch of lines
reaches a rotating file in one write(2) per file, never split across files."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

import fluxtui.stream_outputs as stream_outputs
from fluxtui.ecs.common import iso_time
from fluxtui.stream_outputs import RotatingFile


def _datetime_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@pytest.mark.parametrize("epoch", [
    0.0, 0.0004999, 0.0005, 1.9999994, 1.9999995, 1.9999996, 59.9999996, 86399.9999996,
    951782400.5,  # 2000-02-29
    1764612345.0004995, 1764612345.9999996, 1764612345.123456, 4102444799.9994,
    253402300799.999, -1.5,  # the last fast value, and the general path
])
def test_iso_time_is_datetimes_text(epoch: float) -> None:
    assert iso_time(epoch) == _datetime_text(epoch)


def test_a_batch_is_one_write_per_file_and_lines_stay_whole(tmp_path: Path,
                                                            monkeypatch) -> None:
    path = tmp_path / "stream.json"
    out = RotatingFile(str(path), max_bytes=100, backups=3)
    writes: list[int] = []
    real = os.write

    def counting(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        writes.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(stream_outputs.os, "write", counting)
    lines = [f"line {i:02d} " + "x" * 20 + "\n" for i in range(10)]  # 30 bytes each
    try:
        out.writelines(lines)
    finally:
        out.close()
    files = [path.with_name(f"stream.json.{n}") for n in (3, 2, 1)] + [path]
    texts = [f.read_text() for f in files if f.exists()]
    assert "".join(texts) == "".join(lines)  # nothing lost, in order (oldest file first)
    assert all(len(t.encode()) <= 100 and t.endswith("\n") for t in texts)
    assert len(writes) == len(texts) == 4  # 3 + 3 + 3 + 1 lines
    assert out.rotations == 3
