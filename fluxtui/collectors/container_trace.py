"""Cgroups as they are created and removed, and the container runtime's own set-up, from eBPF
(bpf_programs/containers.bpf.c, loaded by `bpf_loader.load_program`'s helper process: bcc
never enters this one).

Why: the container of a kernel event is named by the cgroup id the kernel reports with it. A
container that lives 100 ms has created and removed its cgroup before any rescan of
/sys/fs/cgroup could see it; the cgroup:cgroup_mkdir tracepoint reports the id and path the
moment the cgroup exists. The buffer is read on demand (`drain`), by the thread that resolves
events, right after the syscall collector's drain: every cgroup created before an event it
resolves is then in hand.

Set-up events (`SetupChange`) say which processes are the runtime's own (descended from a
verified runtime executable, matched by device and inode in the kernel, not by name or path)
until the exec of the container's entrypoint; see `fluxtui/detection/runtime_setup.py`.
Nothing here imports textual.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

from fluxtui.collectors.bpf_loader import LoadError, load_program
from fluxtui.collectors.btf import Btf

PROGRAM = "containers.bpf.c"
FX_CG_MKDIR, FX_CG_RMDIR = 1, 2
FX_SETUP_BEGIN, FX_SETUP_FORK, FX_SETUP_KEEP, FX_SETUP_END = 3, 4, 5, 6
FX_SETNS = 7
SETUP_KINDS = {FX_SETUP_BEGIN: "begin", FX_SETUP_FORK: "fork", FX_SETUP_KEEP: "keep",
               FX_SETUP_END: "end"}
MAX_RUNTIMES = 64
log = logging.getLogger(__name__)  # size of the kernel's map of runtime executables

BTF_MEMBERS = {
    "task_group_leader": ("task_struct", "group_leader"),
    "task_start_boottime": ("task_struct", "start_boottime"),
    "task_tgid": ("task_struct", "tgid"),
    "task_mm": ("task_struct", "mm"),
    "mm_exe_file": ("mm_struct", "exe_file"),
    "file_f_inode": ("file", "f_inode"),
    "inode_i_ino": ("inode", "i_ino"),
    "inode_i_sb": ("inode", "i_sb"),
    "inode_i_nlink": ("inode", "__i_nlink"),
    "sb_s_dev": ("super_block", "s_dev"),
    "task_nsproxy": ("task_struct", "nsproxy"),
    "nsproxy_mnt_ns": ("nsproxy", "mnt_ns"),
}
LATE_MEMBERS = {  # after mnt_ns_inum and host_mnt_ns in the config
    "task_files": ("task_struct", "files"),
    "files_fdt": ("files_struct", "fdt"),
    "fdtable_fd": ("fdtable", "fd"),
    "fdtable_max_fds": ("fdtable", "max_fds"),
}


class CgConfig(ctypes.Structure):
    _fields_ = [("ns_per_tick", ctypes.c_uint64),
                *[(name, ctypes.c_uint32) for name in BTF_MEMBERS],
                ("mnt_ns_inum", ctypes.c_uint32), ("host_mnt_ns", ctypes.c_uint32),
                *[(name, ctypes.c_uint32) for name in LATE_MEMBERS]]


class CgEventC(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint32), ("level", ctypes.c_uint32), ("id", ctypes.c_uint64),
                ("tgid", ctypes.c_uint32), ("root", ctypes.c_uint32),
                ("start_ticks", ctypes.c_uint64), ("ktime_ns", ctypes.c_uint64),
                ("path", ctypes.c_char * 256)]


class RuntimeKey(ctypes.Structure):
    _fields_ = [("dev", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("ino", ctypes.c_uint64)]


class CgroupChange(NamedTuple):
    created: bool  # False: removed
    cgroup_id: int
    path: str  # relative to the hierarchy's root, "/" first
    hierarchy: int  # the kernel's hierarchy id; the unified (v2) one is what events carry


class SetupChange(NamedTuple):
    kind: str  # begin, fork, keep, end (SETUP_KINDS)
    pid: int
    start_ticks: int
    cgroup_id: int  # of the process when it changed
    parent_pid: int = 0  # fork: the process in set-up that forked it


class SetnsTarget(NamedTuple):
    """What the fd given to setns() held when the call was made: the inode number of the file
    (a namespace file's is the namespace's id, as in /proc/PID/ns/*)."""

    pid: int
    tid: int
    start_ticks: int
    inode: int


ContainerTraceEvent = CgroupChange | SetupChange | SetnsTarget


class TraceUnavailable(Exception):
    """Why the container trace cannot run here, phrased for the user."""


def kernel_dev(st_dev: int) -> int:
    """The kernel's s_dev (major << 20 | minor) of a user-space st_dev."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def decode(raw: bytes) -> ContainerTraceEvent | None:
    if len(raw) < ctypes.sizeof(CgEventC):
        return None
    ev = CgEventC.from_buffer_copy(raw)
    if ev.kind in (FX_CG_MKDIR, FX_CG_RMDIR):
        path = ev.path.decode("utf-8", "replace") or "/"
        return CgroupChange(ev.kind == FX_CG_MKDIR, ev.id, path, ev.root)
    if ev.kind in SETUP_KINDS:
        parent = ev.level if ev.kind == FX_SETUP_FORK else 0
        return SetupChange(SETUP_KINDS[ev.kind], ev.tgid, ev.start_ticks, ev.id, parent)
    if ev.kind == FX_SETNS:
        return SetnsTarget(ev.tgid, ev.level, ev.start_ticks, ev.id)
    return None


class ContainerTrace:
    """The loaded program. A thread of its own reads the buffer as events come: each cgroup
    change goes to `on_cgroup` at once (a container's name is read while its runtime's state
    still has it); `drain` returns the set-up changes and setns targets since the last call,
    oldest first, after reading what is left in the buffer."""

    # Records and a stop (an eventfd written by close) wake the poller at once: the timeout is a
    # safety net only (a wake-up costs ~0.1 ms of CPU on a virtual machine).
    POLL_MS = 5000

    def __init__(self, on_cgroup: Callable[[CgroupChange], object], ring_pages: int = 64) -> None:
        if os.geteuid() != 0:
            raise TraceUnavailable("the container trace needs root")
        try:
            btf = Btf.load()
            offsets = {name: btf.member_offset(*where) for name, where in BTF_MEMBERS.items()}
            offsets["mnt_ns_inum"] = (btf.member_offset("mnt_namespace", "ns")
                                      + btf.member_offset("ns_common", "inum"))
            offsets.update({name: btf.member_offset(*where)
                            for name, where in LATE_MEMBERS.items()})
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise TraceUnavailable(f"kernel BTF unusable: {exc}") from None
        cflags = [f"-DRING_PAGES={ring_pages}", "-w"]
        try:
            self._program = load_program(PROGRAM, cflags)
        except LoadError as exc:
            raise TraceUnavailable(f"eBPF program failed to load: {exc}") from None
        self._ring = self._program.ring_buffer("events")
        self._stop_wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._ring.wake_also_on_fd(self._stop_wake)
        cfg = CgConfig()
        for name, offset in offsets.items():
            setattr(cfg, name, offset)
        cfg.host_mnt_ns = os.stat("/proc/self/ns/mnt").st_ino
        cfg.ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        self._on_cgroup = on_cgroup
        self._pending: list[SetupChange | SetnsTarget] = []
        self.malformed = 0
        self.callback_errors = 0
        self._lock = threading.Lock()  # the ring buffer is read by one thread at a time
        self._stop = threading.Event()
        self._program["config"].update(0, bytes(cfg))
        self._poller = threading.Thread(target=self._poll, name="fluxtui-containers",
                                        daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        # The wait is outside the lock: drain() (the engine's tick) never waits for it.
        while not self._stop.is_set():
            try:
                if not self._ring.wait(self.POLL_MS / 1000):
                    continue
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._ring.consume(self._on_event)
            except Exception:
                log.exception("container trace: ring buffer poll failed")
                self._stop.wait(0.5)

    def set_runtimes(self, files: Iterable[os.stat_result]) -> None:
        """The executables whose exec begins a runtime's set-up: verified by the caller."""
        table = self._program["runtimes"]
        table.pop_all()
        for st in list(files)[:MAX_RUNTIMES]:
            table.update(bytes(RuntimeKey(kernel_dev(st.st_dev), 0, st.st_ino)), 1)

    def mark_setup(self, pid: int) -> None:
        """A live runtime process found at start (forked before the trace was loaded)."""
        self._program["setup"].update(pid, 1)

    def _on_event(self, raw: bytes) -> None:
        event = decode(raw)
        if event is None:
            self.malformed += 1
        elif isinstance(event, CgroupChange):
            try:
                self._on_cgroup(event)
            except Exception:  # a bad state file must not stop the trace
                self.callback_errors += 1
                log.exception("container trace: cgroup change not handled")
        else:
            self._pending.append(event)

    def drain(self) -> list[SetupChange | SetnsTarget]:
        with self._lock:
            self._ring.consume(self._on_event)
            out, self._pending = self._pending, []
        return out

    @property
    def dropped(self) -> int:
        """Events lost because the ring buffer was full."""
        raw = self._program["dropped"].lookup(0)
        return int.from_bytes(raw, "little") if raw else 0

    def close(self) -> None:
        self._stop.set()
        os.eventfd_write(self._stop_wake, 1)
        self._poller.join(timeout=5)
        with self._lock:
            if self._poller.is_alive():
                log.warning("container trace poller did not stop; BPF program left attached")
                return
            self._program.close()
            os.close(self._stop_wake)
