"""Syscall capture with eBPF: loads bpf_programs/syscalls.bpf.c with BCC, drains its count maps
and reads its ring buffer of high-signal events. No scoring here (see fluxtui/detection/).

What the kernel side does is described at the top of syscalls.bpf.c. The parts it needs live
next to this module: `bpf_structs` (the ctypes mirrors of fluxtui_events.h), `btf` (kernel
structure offsets), `syscall_table` (numbers <-> names), `kernel_event` (the event type) and
`event_decoder` (ring buffer bytes -> events). This module loads the program, decodes ring
buffer events on a poll thread (copied out inside the callback) and drains the count maps on
demand (`drain`, from the engine's tick). Nothing here imports textual.
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxtui.collectors.bpf_loader import compile_program, program_path
from fluxtui.collectors.bpf_structs import (
    CAPTURE,
    COMPAT_CAPTURE,
    FX_CAP_EVENT,
    FX_DROP_SLOTS,
    FX_MAX_NR,
    Config,
)
from fluxtui.collectors.btf import BTF_PATH, Btf, kernel_offsets
from fluxtui.collectors.event_decoder import decode_event
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.events import ProcessKey

log = logging.getLogger(__name__)

BPF_SOURCE = program_path("syscalls.bpf.c")
TRACEFS = Path("/sys/kernel/tracing")


class CollectorUnavailable(Exception):
    """Why the syscall collector cannot run here, phrased for the header and `fluxtui doctor`."""



# --- the collector ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DropCounts:
    """What could not be recorded (never silently): syscalls not counted because the count map
    was full or per-thread state could not be allocated, events lost in a full ring buffer or a
    full user-space queue, execs reported without argv."""

    counts: int = 0
    thread_state: int = 0
    events: int = 0
    queue: int = 0
    argv: int = 0

    @property
    def syscalls_lost(self) -> int:
        return self.counts + self.thread_state

    @property
    def events_lost(self) -> int:
        return self.events + self.queue

    def __sub__(self, other: DropCounts) -> DropCounts:
        return DropCounts(self.counts - other.counts, self.thread_state - other.thread_state,
                          self.events - other.events, self.queue - other.queue,
                          self.argv - other.argv)


@dataclass(frozen=True)
class Drain:
    """Counts since the previous drain, per process: by syscall number and by bigram."""

    window_s: float
    counts: dict[ProcessKey, dict[int, int]]
    bigrams: dict[ProcessKey, dict[tuple[int, int], int]]
    events: list[KernelEvent]
    dropped: DropCounts  # during this window
    dropped_total: DropCounts  # since start
    malformed_events: int = 0


@dataclass
class _Queue:
    events: deque[KernelEvent] = field(default_factory=deque)
    overflow: int = 0
    malformed: int = 0


def group_dead_supported() -> bool:
    fmt = TRACEFS / "events/sched/sched_process_exit/format"
    try:
        return "group_dead" in fmt.read_text()
    except OSError:
        return False


def unavailable_reason() -> str | None:
    """Why the collector cannot start here, checked without compiling (for `fluxtui doctor`);
    None when every prerequisite is present (compilation may still fail: see start())."""
    if os.geteuid() != 0:
        return "needs root (run with sudo)"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"bcc not importable ({exc}); install python3-bpfcc (make setup)"
    release = os.uname().release
    if not Path(f"/lib/modules/{release}/build/include").exists():
        return f"no kernel headers at /lib/modules/{release}/build (make setup links them)"
    if not (TRACEFS / "events/raw_syscalls/sys_enter").exists():
        return f"tracefs not mounted at {TRACEFS} (mount -t tracefs nodev {TRACEFS})"
    if not BTF_PATH.exists():
        return f"kernel has no BTF ({BTF_PATH}); needs CONFIG_DEBUG_INFO_BTF"
    if not BPF_SOURCE.exists():
        return f"BPF source missing: {BPF_SOURCE}"
    return None


class SyscallCollector:
    """Owns the loaded BPF program. `start` raises CollectorUnavailable with the reason; `drain`
    is called from one thread (the engine tick); ring buffer events are read on a poll thread."""

    def __init__(self, ring_buffer_pages: int = 64, count_map_entries: int = 65536,
                 event_queue_limit: int = 10_000, self_pid: int | None = None) -> None:
        self.ring_buffer_pages = ring_buffer_pages
        self.count_map_entries = count_map_entries
        self.event_queue_limit = event_queue_limit
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self.table: SyscallTable | None = None
        self._bpf: Any = None
        self._config = Config()
        self._gen = 0
        self._queue = _Queue()
        self._queue_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._bpf_lock = threading.Lock()  # drain and close: the BPF object is not freed mid-use
        self.join_timeout_s = 2.0
        self._last_drain = time.monotonic()
        self._dropped_before = DropCounts()
        # The exit event is the process's (not only its main thread's) when the kernel's
        # sched_process_exit says group_dead.
        self.group_dead = True

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise CollectorUnavailable(reason)
        try:
            offsets = kernel_offsets(Btf.load())
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise CollectorUnavailable(f"kernel BTF unusable: {exc}") from None
        try:
            self.table = SyscallTable.load()
        except Exception as exc:  # bcc.syscall raises a bare Exception without ausyscall
            raise CollectorUnavailable(f"no syscall table for this architecture: {exc}") from None

        cflags = [f"-DFX_COUNT_ENTRIES={self.count_map_entries}",
                  f"-DFX_RINGBUF_PAGES={self.ring_buffer_pages}"]
        self.group_dead = group_dead_supported()
        if self.group_dead:
            cflags.append("-DFX_HAVE_GROUP_DEAD")
        try:
            self._bpf = compile_program(BPF_SOURCE.name, cflags)
        except Exception as exc:  # compile or verifier error: BCC raises Exception
            raise CollectorUnavailable(f"BPF program failed to load: {exc}") from None
        try:
            self._configure(offsets)
            self._bpf[b"events"].open_ring_buffer(self._on_event)
        except Exception as exc:
            self.close()
            raise CollectorUnavailable(f"BPF maps could not be set up: {exc}") from None
        self._last_drain = time.monotonic()
        self._poller = threading.Thread(target=self._poll, args=(self._bpf,),
                                        name="fluxtui-syscalls", daemon=True)
        self._poller.start()

    def _configure(self, offsets: dict[str, int]) -> None:
        assert self._bpf is not None and self.table is not None
        counts = self._bpf[b"counts"]
        counts[ct.c_int(0)] = ct.c_int(self._bpf[b"counts_a"].get_fd())
        counts[ct.c_int(1)] = ct.c_int(self._bpf[b"counts_b"].get_fd())
        desc = self._bpf[b"syscall_desc"]
        for name, value in CAPTURE.items():
            nr = self.table.numbers.get(name)
            if nr is not None and nr < FX_MAX_NR:
                desc[ct.c_int(nr)] = ct.c_uint32(value)
        compat_desc = self._bpf[b"compat_desc"]
        for name in COMPAT_CAPTURE:
            nr = self.table.compat_numbers.get(name)
            if nr is not None and nr < FX_MAX_NR:
                compat_desc[ct.c_int(nr)] = ct.c_uint32(FX_CAP_EVENT)
        cfg = self._config
        cfg.self_tgid = self.self_pid
        cfg.gen = self._gen
        for name, offset in offsets.items():
            setattr(cfg, name, offset)
        # The program ignores everything while ns_per_tick is 0. The array update is a plain
        # copy, so write every other field first, then the same values with ns_per_tick.
        cfg.ns_per_tick = 0
        self._bpf[b"config"][ct.c_int(0)] = cfg
        cfg.ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        self._bpf[b"config"][ct.c_int(0)] = cfg

    def close(self) -> None:
        self._stop.set()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.join(timeout=self.join_timeout_s)
        with self._bpf_lock:
            bpf, self._bpf = self._bpf, None
            if bpf is None:
                return
            if poller is not None and poller.is_alive():
                # Freeing the ring buffer under a running poll would crash the process; the
                # program stays loaded until the thread ends and the object is collected.
                log.warning("syscall ring buffer poller did not stop; BPF object not cleaned up")
                return
            bpf.cleanup()

    @property
    def running(self) -> bool:
        return self._bpf is not None

    # --- ring buffer -------------------------------------------------------------------------

    def _poll(self, bpf: Any) -> None:
        while not self._stop.is_set():
            try:
                bpf.ring_buffer_poll(timeout=100)
            except Exception:
                log.exception("ring buffer poll failed")
                self._stop.wait(0.5)

    def _on_event(self, _ctx: Any, data: Any, size: int) -> int:
        raw = ct.string_at(data, size)  # copy out before the kernel reuses the buffer
        event = decode_event(raw, self.table)
        with self._queue_lock:
            if event is None:
                self._queue.malformed += 1
            elif len(self._queue.events) >= self.event_queue_limit:
                self._queue.overflow += 1
            else:
                self._queue.events.append(event)
        return 0

    # --- draining ----------------------------------------------------------------------------

    def drain(self) -> Drain:
        """Counts since the previous drain (none lost: see "Draining" in syscalls.bpf.c) and
        the events received meanwhile."""
        with self._bpf_lock:
            if self._bpf is None:
                raise RuntimeError("collector not started")
            return self._drain()

    def _drain(self) -> Drain:
        # Events first, then the flip: an exit event taken here was sent after its process's
        # last counts went into the map being written (sched_process_exit flushes before it
        # emits), and that map is read below, so a process's final counts never arrive after
        # its exit event.
        with self._queue_lock:
            events = list(self._queue.events)
            self._queue.events.clear()
            overflow, malformed = self._queue.overflow, self._queue.malformed
        old = self._gen
        self._gen = old ^ 1
        self._config.gen = self._gen
        self._bpf[b"config"][ct.c_int(0)] = self._config
        # Rewriting a slot of the array of maps waits until every running program is done.
        self._bpf[b"counts"][ct.c_int(old)] = ct.c_int(self._bpf[_INNER[old]].get_fd())
        now = time.monotonic()
        window, self._last_drain = now - self._last_drain, now

        counts: dict[ProcessKey, dict[int, int]] = {}
        bigrams: dict[ProcessKey, dict[tuple[int, int], int]] = {}
        inner = self._bpf[_INNER[old]]
        for _ in range(3):  # one pass empties it; more only if the kernel returned a partial one
            got = 0
            for key, value in inner.items_lookup_and_delete_batch():
                got += 1
                pkey = ProcessKey(key.tgid, key.start_ticks)
                by_nr = counts.setdefault(pkey, {})
                by_nr[key.nr] = by_nr.get(key.nr, 0) + value
                pairs = bigrams.setdefault(pkey, {})
                pairs[(key.prev, key.nr)] = pairs.get((key.prev, key.nr), 0) + value
            if not got:
                break

        dropped_map = self._bpf[b"dropped"]
        slots = [int(dropped_map.sum(ct.c_int(i)).value) for i in range(FX_DROP_SLOTS)]
        total = DropCounts(counts=slots[0], events=slots[1], thread_state=slots[2],
                           argv=slots[3], queue=overflow)
        dropped, self._dropped_before = total - self._dropped_before, total
        return Drain(window, counts, bigrams, events, dropped, total, malformed)


_INNER = (b"counts_a", b"counts_b")
