"""A deterministic engine for UI tests: it serves fixed snapshots, collects nothing."""

from __future__ import annotations

from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.events import (
    ComponentState,
    ComponentStatus,
    CpuTimes,
    IoRate,
    MemoryUsage,
    ProcessKey,
    ProcessRow,
    Snapshot,
    SystemMetrics,
)

GIB = 1024**3


def metrics(cpu: float = 37.5, timestamp: float = 1_800_000_000.0) -> SystemMetrics:
    return SystemMetrics(
        timestamp=timestamp,
        interval=1.0,
        cpu=CpuTimes(total=cpu, user=cpu * 0.6, system=cpu * 0.3, iowait=cpu * 0.1),
        cpu_per_core=(cpu - 10, cpu + 10, 95.0, 55.0),
        memory=MemoryUsage(total=16 * GIB, used=6 * GIB, available=10 * GIB, percent=37.5,
                           swap_total=2 * GIB, swap_used=GIB // 4, swap_percent=12.5),
        disks=(IoRate("nvme0n1", 2_500_000.0, 1_000_000.0), IoRate("vda", 0.0, 4096.0)),
        networks=(IoRate("eth0", 125_000.0, 64_000.0),),
        load_average=(0.42, 0.35, 0.30),
        uptime_s=3 * 86400 + 4 * 3600 + 5 * 60,
        process_count=5,
    )


def row(pid: int, name: str, ppid: int = 1, cpu: float | None = 1.0, user: str = "root",
        rss: int = 10 * 1024 * 1024, risk: float | None = None,
        cmdline: tuple[str, ...] = ()) -> ProcessRow:
    return ProcessRow(
        key=ProcessKey(pid, 1000 + pid), ppid=ppid, user=user, name=name, exe=f"/usr/bin/{name}",
        cmdline=cmdline or (f"/usr/bin/{name}",), cpu_percent=cpu, memory_rss=rss, threads=1,
        state="sleeping", risk=risk,
    )


def snapshot(rows: list[ProcessRow] | None = None, sequence: int = 1, cpu: float = 37.5
             ) -> Snapshot:
    rows = rows if rows is not None else [
        row(1, "systemd", ppid=0, cpu=0.5),
        row(200, "sshd", cpu=0.0),
        row(300, "bash", ppid=200, cpu=2.0, user="alice"),
        row(301, "vim", ppid=300, cpu=12.5, user="alice", rss=80 * 1024 * 1024),
        row(400, "postgres", cpu=7.25, user="postgres", rss=300 * 1024 * 1024),
    ]
    return Snapshot(
        sequence=sequence,
        metrics=metrics(cpu),
        processes={r.key: r for r in rows},
        statuses=(
            ComponentStatus("metrics", ComponentState.RUNNING),
            ComponentStatus("processes", ComponentState.RUNNING),
            ComponentStatus("syscalls", ComponentState.UNAVAILABLE, "bcc not importable"),
        ),
        alerts=(),
    )


class StaticEngine(Engine):
    """Serves whatever snapshot the test sets; starts no thread."""

    def __init__(self, first: Snapshot, config: Config | None = None) -> None:
        super().__init__(config or Config())
        self.current = first

    @property
    def snapshot(self) -> Snapshot | None:
        return self.current

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
