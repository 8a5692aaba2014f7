from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from fluxtui.collectors import metrics as metrics_module
from fluxtui.collectors.metrics import (
    Counters,
    MetricsCollector,
    cpu_usage,
    io_rates,
    is_physical_disk,
    memory_usage,
)

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_cpu_usage_comes_from_deltas_not_totals_since_boot() -> None:
    # Since boot this CPU was 90% idle; in the last interval it was 50% busy.
    before = Times(100, 0, 50, 1350, 0, 0, 0, 0, 0, 0)
    after = Times(130, 0, 70, 1390, 10, 0, 0, 0, 0, 0)
    usage = cpu_usage(before, after)
    assert usage.total == pytest.approx(50.0)
    assert usage.user == pytest.approx(30.0)
    assert usage.system == pytest.approx(20.0)
    assert usage.iowait == pytest.approx(10.0)


def test_cpu_usage_does_not_count_guest_twice() -> None:
    before = Times(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    after = Times(50, 0, 0, 50, 0, 0, 0, 0, 50, 0)  # guest time is part of user already
    assert cpu_usage(before, after).total == pytest.approx(50.0)


def test_cpu_usage_of_an_idle_or_frozen_interval() -> None:
    same = Times(1, 1, 1, 1, 1, 1, 1, 1, 0, 0)
    assert cpu_usage(same, same).total == 0.0


def test_io_rates_per_second_and_unknown_when_counters_go_back() -> None:
    prev = {"sda": Counters(1000, 2000), "vda": Counters(500, 500)}
    cur = {"sda": Counters(3000, 2000), "vda": Counters(100, 600), "nvme0n1": Counters(5, 5)}
    rates = {r.name: r for r in io_rates(prev, cur, 2.0)}
    assert rates["sda"].read_per_s == 1000.0
    assert rates["sda"].write_per_s == 0.0
    assert "vda" not in rates  # counter reset: no rate rather than a wrong one
    assert "nvme0n1" not in rates  # first sample of a new device
    assert io_rates(prev, cur, 0.0) == ()


def make_sys_block(root: Path) -> Path:
    for name in ("nvme0n1", "vda", "xvda", "sda", "mmcblk0"):
        (root / name / "device").mkdir(parents=True)
    for name in ("loop0", "ram0", "zram0", "dm-0"):
        (root / name).mkdir()
    return root


def test_physical_disks_include_nvme_virtio_xen_and_exclude_virtual(tmp_path: Path) -> None:
    sys_block = make_sys_block(tmp_path)
    for name in ("nvme0n1", "vda", "xvda", "sda", "mmcblk0"):
        assert is_physical_disk(name, sys_block), name
    for name in ("loop0", "ram0", "zram0", "dm-0", "nvme0n1p1", "vda1", "sda2"):
        assert not is_physical_disk(name, sys_block), name


def test_collector_reports_only_physical_disks(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sys_block = make_sys_block(tmp_path)
    counters = {"calls": 0}

    def fake_disks(perdisk: bool, nowrap: bool) -> dict[str, SimpleNamespace]:
        counters["calls"] += 1
        n = counters["calls"] * 4096
        return {name: SimpleNamespace(read_bytes=n, write_bytes=2 * n)
                for name in ("nvme0n1", "nvme0n1p1", "vda", "vda1", "loop0", "ram0", "xvda")}

    monkeypatch.setattr(metrics_module.psutil, "disk_io_counters", fake_disks)
    collector = MetricsCollector(sys_block)
    first = collector.sample()
    assert first.disks == () and first.cpu is None
    second = collector.sample()
    assert {d.name for d in second.disks} == {"nvme0n1", "vda", "xvda"}
    assert second.cpu is not None
    assert len(second.cpu_per_core) == psutil.cpu_count()


def test_memory_used_is_total_minus_available(monkeypatch: pytest.MonkeyPatch) -> None:
    vm = SimpleNamespace(total=1000, available=600, used=100, free=50)  # "used" ignores cache
    swap = SimpleNamespace(total=0, used=0, percent=0.0)
    monkeypatch.setattr(metrics_module.psutil, "virtual_memory", lambda: vm)
    monkeypatch.setattr(metrics_module.psutil, "swap_memory", lambda: swap)
    usage = memory_usage()
    assert usage.used == 400
    assert usage.percent == 40.0


def test_loopback_is_left_out_of_network_rates() -> None:
    collector = MetricsCollector()
    collector.sample()
    assert all(n.name != "lo" for n in collector.sample().networks)
    assert "lo" not in MetricsCollector._net_counters()
