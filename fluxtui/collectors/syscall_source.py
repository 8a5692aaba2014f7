"""Which syscall collector runs (`syscalls.collector`): eBPF, the audit fallback, or "auto",
eBPF where it loads and the audit subsystem otherwise. Nothing here imports textual.
"""

from __future__ import annotations

from typing import Any

from fluxtui.collectors.audit import AuditCollector
from fluxtui.collectors.syscalls import ENTRY_BYTES, CollectorUnavailable, SyscallCollector
from fluxtui.config import SyscallConfig


class AutoCollector:
    """Starts the eBPF collector; when it cannot run, the audit collector, and says why. Every
    other attribute is the running collector's."""

    def __init__(self, ebpf: SyscallCollector, audit: AuditCollector) -> None:
        self._ebpf = ebpf
        self._audit = audit
        self._active: SyscallCollector | AuditCollector = ebpf
        self.ebpf_reason = ""

    def start(self) -> None:
        try:
            self._ebpf.start()
            self._active = self._ebpf
            return
        except CollectorUnavailable as exc:
            self.ebpf_reason = str(exc)
        try:
            self._audit.start()
        except CollectorUnavailable as exc:
            raise CollectorUnavailable(f"eBPF: {self.ebpf_reason}; {exc}") from None
        self._active = self._audit

    @property
    def active(self) -> SyscallCollector | AuditCollector:
        return self._active

    def describe(self) -> str:
        said = self._audit.describe()
        return f"eBPF: {self.ebpf_reason} · {said}" if self.ebpf_reason else said

    def close(self) -> None:
        self._active.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._active, name)


def make_collector(config: SyscallConfig) -> SyscallCollector | AuditCollector | AutoCollector:
    audit = AuditCollector(event_queue_limit=config.event_queue_limit,
                           allow_enable=config.audit_enable)
    if config.collector == "audit":
        return audit
    entries = config.count_map_entries or max(
        1024, config.count_map_memory_mb * 1024 * 1024 // (2 * ENTRY_BYTES))
    ebpf = SyscallCollector(ring_buffer_pages=config.ring_buffer_pages, count_map_entries=entries,
                            event_queue_limit=config.event_queue_limit,
                            fill_level=config.count_map_fill_level)
    return ebpf if config.collector == "ebpf" else AutoCollector(ebpf, audit)
