"""What the syscall capture puts in `Snapshot.views["syscalls"]` each tick, for the risk scorer,
the anomaly model and the UI. Nothing here imports textual."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fluxtui.collectors.syscalls import DropCounts
from fluxtui.component import Channel
from fluxtui.detection.syscall_rules import Finding
from fluxtui.events import ProcessKey, ProcessLifetime

if TYPE_CHECKING:
    from fluxtui.capabilities.lineage import Lineage


@dataclass(frozen=True)
class SyscallView:
    """Snapshot.views["syscalls"]: what the kernel reported during the last tick."""

    window_s: float  # seconds the counts cover
    counts: dict[ProcessKey, dict[str, int]]  # syscall name -> calls in the window
    bigrams: dict[ProcessKey, dict[tuple[str, str], int]]  # (previous, syscall) -> calls
    findings: tuple[Finding, ...]
    exited: tuple[ProcessKey, ...]  # exit events received in the window
    events: int  # high-signal events received in the window
    total_syscalls: int
    dropped: DropCounts  # in the window
    dropped_total: DropCounts  # since start
    # Processes whose life ended this tick, with their totals over it (their last counts are
    # in `counts` of this same tick: nothing of a process arrives after its final record).
    final: dict[ProcessKey, ProcessLifetime] = field(default_factory=dict)
    # Who started whom (kernel exec events + the table), for the scorer's propagation; only
    # read on the tick thread.
    lineage: Lineage | None = None


# The capture publishes its view here each tick; the anomaly model and the risk scorer read it.
SYSCALLS: Channel[SyscallView] = Channel("syscalls", SyscallView, in_snapshot=True)
