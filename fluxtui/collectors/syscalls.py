"""Syscall capture with eBPF: bpf_programs/syscalls.bpf.c, loaded by the bcc helper process
(bpf_loader.load_program: this process never imports bcc), its count maps drained and its ring
buffer of high-signal events read here. No scoring here (see fluxtui/detection/).

What the kernel side does is described at the top of syscalls.bpf.c. The parts it needs live
next to this module: `bpf_structs` (the ctypes mirrors of fluxtui_events.h), `btf` (kernel
structure offsets), `syscall_table` (numbers <-> names), `kernel_event` (the event type),
`event_decoder` (ring buffer bytes -> events), `bpf_maps` and `ringbuf` (the bpf() calls).

Nothing is lost between ticks: a pump thread wakes when the ring buffer has records (epoll),
when the program has inserted a step of new keys into a count map (it wakes the ring buffer's
reader with an empty record: "Fill level" in syscalls.bpf.c), or at the latest every
`watch_interval_s`. It copies the records into the event queue (the tick decodes them: the
pump holds the interpreter only for the copy, so it keeps up even when other threads hold it
for long), and flips and empties the count map being written as soon as it is `fill_level` full
(keys inserted since it was last emptied, counted by the program), keeping the counts until the
tick's `drain` takes them. An idle machine wakes it about once a second (every wake-up costs
about 0.1 ms of CPU on a virtual machine, so polling at 20 Hz cost 0.2-0.5% of a core).
Whatever is lost anyway is counted by kind (`DropCounts.by_kind`). Nothing here imports textual.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fluxtui.collectors.bpf_loader import LoadedProgram, LoadError, load_program, program_path
from fluxtui.collectors.bpf_structs import (
    CAPTURE,
    COMPAT_CAPTURE,
    FX_CAP_EVENT,
    FX_DROP_SLOTS,
    FX_MAX_NR,
    FX_RETRIED,
    Config,
)
from fluxtui.collectors.btf import BTF_PATH, Btf, kernel_offsets
from fluxtui.collectors.event_decoder import decode_event
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.ringbuf import RingBuffer
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
    malformed: int = 0

    @property
    def syscalls_lost(self) -> int:
        return self.counts + self.thread_state

    @property
    def events_lost(self) -> int:
        return self.events + self.queue

    def __sub__(self, other: DropCounts) -> DropCounts:
        return DropCounts(self.counts - other.counts, self.thread_state - other.thread_state,
                          self.events - other.events, self.queue - other.queue,
                          self.argv - other.argv, self.malformed - other.malformed)

    def by_kind(self) -> dict[str, int]:
        """For ComponentStatus.drops: syscalls not counted, kernel events lost in the ring
        buffer, events lost in the queue between ticks, execs without argv, records that could
        not be decoded."""
        return {"syscall_counts": self.syscalls_lost, "kernel_events": self.events,
                "event_queue": self.queue, "argv": self.argv, "malformed_events": self.malformed}


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
    """Ring buffer records copied by the pump, decoded by the tick: the pump holds the
    interpreter for the copy only, so it empties the ring buffer quickly whenever it runs."""

    records: deque[bytes] = field(default_factory=deque)
    overflow: int = 0
    spilled: bool = False  # records from the spare ring buffer since the last drain


@dataclass
class _Pending:
    """Count map contents taken out of the kernel since the last tick's drain, as read: keys
    and values packed (struct fx_count_key, u64). The tick parses them; the pump, which empties
    a map that passes its fill level, only copies them, and goes back to the ring buffer."""

    batches: list[tuple[bytes, bytes]] = field(default_factory=list)


def _boot_ns(record: bytes) -> int:
    return int.from_bytes(record[:8], "little")  # fx_header.boot_ns: every record starts so


_COUNT_KEY = struct.Struct("<IHHQ")  # struct fx_count_key: tgid, prev, nr, start_ticks
_COUNT = struct.Struct("<Q")


def _parse_counts(batches: list[tuple[bytes, bytes]]
                  ) -> tuple[dict[ProcessKey, dict[int, int]],
                             dict[ProcessKey, dict[tuple[int, int], int]]]:
    """Per process: counts by syscall number and by bigram, summed over the batches."""
    counts: dict[ProcessKey, dict[int, int]] = {}
    bigrams: dict[ProcessKey, dict[tuple[int, int], int]] = {}
    for keys, values in batches:
        for (tgid, prev, nr, start), (value,) in zip(_COUNT_KEY.iter_unpack(keys),
                                                     _COUNT.iter_unpack(values), strict=True):
            pkey = ProcessKey(tgid, start)
            by_nr = counts.get(pkey)
            if by_nr is None:
                by_nr = counts[pkey] = {}
                bigrams[pkey] = {}
            by_nr[nr] = by_nr.get(nr, 0) + value
            pairs = bigrams[pkey]
            pairs[(prev, nr)] = pairs.get((prev, nr), 0) + value
    return counts, bigrams


class Loader(Protocol):
    def __call__(self, name: str, cflags: list[str], syscall_table: bool = ...
                 ) -> LoadedProgram: ...


PUMP_NICE = -10  # the pump thread's nice value (root only; unchanged otherwise)
ENTRY_BYTES = 96  # kernel memory per count map entry (16-byte key, 8-byte value, hash overhead)


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
    if importlib.util.find_spec("bcc") is None:  # found, not imported: the helper imports it
        return "bcc not importable; install python3-bpfcc (make setup)"
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


def wake_mask(entries: int, fill_level: float, cpus: int) -> int:
    """config.wake_mask: the program wakes the pump every (mask + 1) keys a CPU inserts, a power
    of two such that all CPUs together insert at most a quarter of the fill level unseen."""
    step = max(1, int(min(fill_level, 1.0) * entries / (4 * max(1, cpus))))
    return (1 << (step.bit_length() - 1)) - 1


class SyscallCollector:
    """Owns the loaded BPF program. `start` raises CollectorUnavailable with the reason; `drain`
    is called from one thread (the engine tick); the pump thread reads the ring buffer and
    empties a count map that passes `fill_level` between ticks."""

    def __init__(self, ring_buffer_pages: int = 1024, count_map_entries: int = 131072,
                 event_queue_limit: int = 50_000, self_pid: int | None = None,
                 fill_level: float = 0.5, watch_interval_s: float = 1.0,
                 loader: Loader = load_program) -> None:
        self.ring_buffer_pages = ring_buffer_pages
        self.count_map_entries = count_map_entries
        self.event_queue_limit = event_queue_limit
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self.fill_level = fill_level  # > 1: only the tick drains (tests of the drop counters)
        self.watch_interval_s = watch_interval_s
        self._loader = loader
        self.table: SyscallTable | None = None
        self._program: LoadedProgram | None = None
        self._config = Config()
        self._gen = 0
        self._queue = _Queue()
        self._malformed = 0  # records that could not be decoded, since start
        self._queue_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._stop_wake = -1  # an eventfd that wakes the pump's wait at close
        # Flips, map reads and close: one at a time (the pump thread and the tick).
        self._bpf_lock = threading.Lock()
        # Reading the ring buffer, apart from the flips: the pump keeps reading while the tick
        # empties a count map. Taken inside _bpf_lock by the tick, alone by the pump.
        self._ring_lock = threading.Lock()
        self.join_timeout_s = 2.0
        self._last_drain = time.monotonic()
        self._dropped_before = DropCounts()
        self._pending = _Pending()
        self._inserted_base = [0, 0]
        self.early_drains = 0  # flips made because a count map passed fill_level
        self.ring_retries = 0  # ring buffer writes the kernel refused with room left, retried
        self.map_memory_bytes = 0  # kernel memory of the program's maps (fdinfo memlock)
        self.helper_maxrss_kb = 0  # peak resident size of the helper that compiled it
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

        cflags = [f"-DFX_COUNT_ENTRIES={self.count_map_entries}",
                  f"-DFX_RINGBUF_PAGES={self.ring_buffer_pages}",
                  f"-DFX_OFF_THREAD_STATUS={offsets['task_thread_status']}",
                  f"-DFX_OFF_TGID={offsets['task_tgid']}"]
        self.group_dead = group_dead_supported()
        if self.group_dead:
            cflags.append("-DFX_HAVE_GROUP_DEAD")
        try:
            program = self._loader(BPF_SOURCE.name, cflags, syscall_table=True)
        except (LoadError, OSError) as exc:  # compile, verifier or helper error
            raise CollectorUnavailable(f"BPF program failed to load: {exc}") from None
        try:
            raw = program.extras["syscall_table"]
            self.table = SyscallTable({int(k): v for k, v in raw["names"].items()},
                                      {int(k): v for k, v in raw["compat"].items()})
            self._program = program
            self._configure(offsets)
            self._open_rings()
        except Exception as exc:
            self._program = program
            self.close()
            raise CollectorUnavailable(f"BPF maps could not be set up: {exc}") from None
        self.map_memory_bytes = program.map_memory()
        self.helper_maxrss_kb = program.helper_maxrss_kb
        self._last_drain = time.monotonic()
        self._stop.clear()
        self._stop_wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._ring.wake_also_on_fd(self._stop_wake)
        self._poller = threading.Thread(target=self._pump, name="fluxtui-syscalls",
                                        daemon=True)
        self._poller.start()

    def _open_rings(self) -> None:
        """The main ring buffer and the spare one (see FX_RING_TRIES in syscalls.bpf.c); a
        wait on the main one returns when either has records."""
        assert self._program is not None
        self._ring = self._program.ring_buffer("events")
        self._spill = self._program.ring_buffer("spill")
        self._ring.wake_also_on(self._spill)

    def _configure(self, offsets: dict[str, int]) -> None:
        program, table = self._program, self.table
        assert program is not None and table is not None
        counts = program["counts"]
        for slot, name in enumerate(_INNER):
            counts.update(slot, program[name].fd)
        desc = program["syscall_desc"]
        for name, value in CAPTURE.items():
            nr = table.numbers.get(name)
            if nr is not None and nr < FX_MAX_NR:
                desc.update(nr, value)
        for name in COMPAT_CAPTURE:  # 32-bit calls: their arguments, no strings
            nr = table.compat_numbers.get(name)
            if nr is not None and nr < FX_MAX_NR:
                desc.update(FX_MAX_NR + nr, FX_CAP_EVENT)
        cfg = self._config
        cfg.self_tgid = self.self_pid
        cfg.gen = self._gen
        cfg.wake_mask = wake_mask(self.count_map_entries, self.fill_level,
                                  program["inserted"].ncpus)
        for name, offset in offsets.items():
            setattr(cfg, name, offset)
        # The program ignores everything while ns_per_tick is 0. The array update is a plain
        # copy, so write every other field first, then the same values with ns_per_tick.
        cfg.ns_per_tick = 0
        program["config"].update(0, bytes(cfg))
        cfg.ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        program["config"].update(0, bytes(cfg))

    def close(self) -> None:
        self._stop.set()
        poller, self._poller = self._poller, None
        if self._stop_wake >= 0:
            os.eventfd_write(self._stop_wake, 1)
        if poller is not None:
            poller.join(timeout=self.join_timeout_s)
        if self._stop_wake >= 0 and (poller is None or not poller.is_alive()):
            os.close(self._stop_wake)
            self._stop_wake = -1
        with self._bpf_lock, self._ring_lock:
            program, self._program = self._program, None
            if program is None:
                return
            if poller is not None and poller.is_alive():
                # Unmapping the ring buffer under a running pump would crash the process; the
                # program stays attached until the thread ends and the process exits.
                log.warning("syscall pump did not stop; BPF program left attached")
                return
            program.close()

    @property
    def ring(self) -> RingBuffer:
        """The event ring buffer (its read counters); only once started."""
        return self._ring

    @property
    def spill_ring(self) -> RingBuffer:
        """The spare ring buffer, written when the main one refuses a record with room left."""
        return self._spill

    @property
    def running(self) -> bool:
        return self._program is not None

    # --- the pump thread ---------------------------------------------------------------------

    def _pump(self) -> None:
        # Ahead of the other threads when the machine is busy: the ring buffer is lost data
        # if this thread waits for a CPU, while the tick only runs late.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PUMP_NICE)
        while not self._stop.is_set():
            try:
                self._ring.wait(self.watch_interval_s)
                with self._ring_lock:
                    if self._program is None:
                        return
                    self._consume()
                # Never waits for the tick's drain (which empties a map itself): back to the
                # ring buffer instead.
                if self._bpf_lock.acquire(blocking=False):
                    try:
                        if self._program is None:
                            return
                        if self._fill() >= self.fill_level * self.count_map_entries:
                            self.early_drains += 1
                            self._collect(self._flip())
                    finally:
                        self._bpf_lock.release()
            except Exception:
                log.exception("syscall pump failed")
                self._stop.wait(0.5)

    def _fill(self) -> int:
        """Keys inserted into the count map being written since it was last emptied."""
        assert self._program is not None
        return self._program["inserted"].percpu_u64_sum(self._gen) - self._inserted_base[self._gen]

    def _consume(self) -> None:
        """Both ring buffers into the queue (the spare one is written only when the main one
        refused a record with room left: see FX_RING_TRIES in syscalls.bpf.c)."""
        self._ring.consume(self._on_event)
        if self._spill.consume(self._on_event):
            with self._queue_lock:
                self._queue.spilled = True

    def _on_event(self, raw: bytes) -> None:
        with self._queue_lock:
            if len(self._queue.records) >= self.event_queue_limit:
                self._queue.overflow += 1
            else:
                self._queue.records.append(raw)

    # --- draining ----------------------------------------------------------------------------

    def drain(self) -> Drain:
        """Counts since the previous drain (none lost: see "Draining" in syscalls.bpf.c) and
        the events received meanwhile."""
        with self._bpf_lock:
            if self._program is None:
                raise RuntimeError("collector not started")
            taken = self._take()
        return self._decode(*taken)  # outside the lock: the pump may empty a map meanwhile

    def _flip(self) -> int:
        """Makes the program write the other count map; returns the one it no longer writes."""
        assert self._program is not None
        old = self._gen
        self._gen = old ^ 1
        self._config.gen = self._gen
        self._program["config"].update(0, bytes(self._config))
        # Rewriting a slot of the array of maps waits until every running program is done.
        self._program["counts"].update(old, self._program[_INNER[old]].fd)
        return old

    def _collect(self, old: int) -> None:
        """Empties count map `old` (no longer written) into the pending batches."""
        assert self._program is not None
        self._pending.batches.append(self._program[_INNER[old]].pop_all_packed())
        # Nothing inserts into `old` until the next flip: what it counted so far is the base.
        self._inserted_base[old] = self._program["inserted"].percpu_u64_sum(old)

    def _take(self) -> tuple[deque[bytes], int, list[tuple[bytes, bytes]], list[int]]:
        """What the kernel sent since the last drain, as read: ring buffer records, count map
        batches, the drop counters."""
        # Events first, then the flip: an exit event taken here was sent after its process's
        # last counts went into the map being written (sched_process_exit flushes before it
        # emits), and that map is read below, so a process's final counts never arrive after
        # its exit event.
        assert self._program is not None
        with self._ring_lock:
            self._consume()
            with self._queue_lock:
                records, self._queue.records = self._queue.records, deque()
                overflow, spilled = self._queue.overflow, self._queue.spilled
                self._queue.spilled = False
        if spilled:  # records of the spare ring may be older than some of the main one's
            records = deque(sorted(records, key=_boot_ns))
        self._collect(self._flip())
        pending, self._pending = self._pending, _Pending()
        dropped_map = self._program["dropped"]
        slots = [dropped_map.percpu_u64_sum(i) for i in range(FX_DROP_SLOTS)]
        return records, overflow, pending.batches, slots

    def _decode(self, records: deque[bytes], overflow: int, batches: list[tuple[bytes, bytes]],
                slots: list[int]) -> Drain:
        events = []
        for raw in records:
            event = decode_event(raw, self.table)
            if event is None:
                self._malformed += 1
            else:
                events.append(event)
        now = time.monotonic()
        window, self._last_drain = now - self._last_drain, now
        total = DropCounts(counts=slots[0], events=slots[1], thread_state=slots[2],
                           argv=slots[3], queue=overflow, malformed=self._malformed)
        self.ring_retries = slots[FX_RETRIED]
        dropped, self._dropped_before = total - self._dropped_before, total
        counts, bigrams = _parse_counts(batches)
        return Drain(window, counts, bigrams, events, dropped, total, self._malformed)


_INNER = ("counts_a", "counts_b")
