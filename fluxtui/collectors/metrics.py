"""System metrics from psutil: CPU from deltas between samples, memory from MemAvailable, disk and
network rates per physical device and interface."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from fluxtui.events import (
    ComponentState,
    ComponentStatus,
    CpuTimes,
    IoRate,
    MemoryUsage,
    SystemMetrics,
)

SYS_BLOCK = Path("/sys/block")


class Counters(NamedTuple):
    read: int
    write: int


def cpu_usage(prev: Any, cur: Any) -> CpuTimes:
    """Busy share between two psutil `cpu_times()` samples. Guest time is already counted in
    user/nice by the kernel, so it is left out of the total to avoid counting it twice."""
    fields = [f for f in cur._fields if f not in ("guest", "guest_nice")]
    deltas = {f: max(0.0, getattr(cur, f) - getattr(prev, f)) for f in fields}
    total = sum(deltas.values())
    if total <= 0:
        return CpuTimes(0.0, 0.0, 0.0, 0.0)
    idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)

    def pct(value: float) -> float:
        return 100.0 * value / total

    return CpuTimes(
        total=pct(total - idle),
        user=pct(deltas.get("user", 0.0) + deltas.get("nice", 0.0)),
        system=pct(deltas.get("system", 0.0) + deltas.get("irq", 0.0) + deltas.get("softirq", 0.0)
                   + deltas.get("steal", 0.0)),
        iowait=pct(deltas.get("iowait", 0.0)),
    )


def io_rates(prev: Mapping[str, Counters], cur: Mapping[str, Counters], seconds: float
             ) -> tuple[IoRate, ...]:
    """Bytes/s per name. A name seen for the first time, or whose counters went backwards (device
    reset, counter wrap), has no rate this interval and is left out rather than guessed."""
    if seconds <= 0:
        return ()
    out = []
    for name in sorted(cur):
        before = prev.get(name)
        now = cur[name]
        if before is None or now.read < before.read or now.write < before.write:
            continue
        out.append(IoRate(name, (now.read - before.read) / seconds,
                          (now.write - before.write) / seconds))
    return tuple(out)


def is_physical_disk(name: str, sys_block: Path = SYS_BLOCK) -> bool:
    """Whole physical (or virtual-hardware) disks: sda, nvme0n1, vda, xvda, mmcblk0. Partitions
    are not entries of /sys/block; loop, ram, zram and device-mapper devices have no `device`
    link there."""
    return (sys_block / name / "device").exists()


def memory_usage() -> MemoryUsage:
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    used = vm.total - vm.available
    return MemoryUsage(
        total=vm.total,
        used=used,
        available=vm.available,
        percent=100.0 * used / vm.total if vm.total else 0.0,
        swap_total=swap.total,
        swap_used=swap.used,
        swap_percent=swap.percent,
    )


class MetricsCollector:
    name = "metrics"

    def __init__(self, sys_block: Path = SYS_BLOCK) -> None:
        self._sys_block = sys_block
        self._prev_time: float | None = None
        self._prev_cpu: Any = None
        self._prev_cores: list[Any] = []
        self._prev_disks: dict[str, Counters] = {}
        self._prev_nets: dict[str, Counters] = {}
        self._boot_time = psutil.boot_time()
        self._physical: dict[str, bool] = {}

    def status(self) -> ComponentStatus:
        return ComponentStatus(self.name, ComponentState.RUNNING)

    def _disk_counters(self) -> dict[str, Counters]:
        raw = psutil.disk_io_counters(perdisk=True, nowrap=True) or {}
        out = {}
        for name, c in raw.items():
            physical = self._physical.get(name)
            if physical is None:
                physical = self._physical[name] = is_physical_disk(name, self._sys_block)
            if physical:
                out[name] = Counters(c.read_bytes, c.write_bytes)
        return out

    @staticmethod
    def _net_counters() -> dict[str, Counters]:
        stats = psutil.net_if_stats()
        out = {}
        for name, c in psutil.net_io_counters(pernic=True, nowrap=True).items():
            flags = getattr(stats.get(name), "flags", "")
            if name == "lo" or "loopback" in flags.split(","):
                continue
            out[name] = Counters(c.bytes_recv, c.bytes_sent)
        return out

    def sample(self) -> SystemMetrics:
        now = time.monotonic()
        cpu = psutil.cpu_times()
        cores = psutil.cpu_times(percpu=True)
        disks = self._disk_counters()
        nets = self._net_counters()
        interval = None if self._prev_time is None else now - self._prev_time
        per_core: tuple[float, ...]
        disk_rates: tuple[IoRate, ...]
        net_rates: tuple[IoRate, ...]
        if interval is None:
            cpu_now, per_core, disk_rates, net_rates = None, (), (), ()
        else:
            cpu_now = cpu_usage(self._prev_cpu, cpu)
            per_core = tuple(cpu_usage(p, c).total for p, c in zip(self._prev_cores, cores,
                                                                    strict=False))
            disk_rates = io_rates(self._prev_disks, disks, interval)
            net_rates = io_rates(self._prev_nets, nets, interval)
        self._prev_time, self._prev_cpu, self._prev_cores = now, cpu, cores
        self._prev_disks, self._prev_nets = disks, nets
        wall = time.time()
        return SystemMetrics(
            timestamp=wall,
            interval=interval,
            cpu=cpu_now,
            cpu_per_core=per_core,
            memory=memory_usage(),
            disks=disk_rates,
            networks=net_rates,
            load_average=psutil.getloadavg(),
            uptime_s=wall - self._boot_time,
            process_count=len(psutil.pids()),
        )
