"""An audited syscall (`AuditEvent`) -> the `KernelEvent`s the eBPF collector would have sent
for it, so that the same rules give the same findings. Nothing here imports textual.

Audit logs a syscall when it returns, with its first four arguments and the caller's ids
after the call; what the BPF program reads in the kernel, audit does not give, and is taken
from /proc while the process still runs (each field says where it comes from):
- the process's start time (ProcessKey): /proc/PID/stat, remembered per pid from the first
  record of the process that finds it running; 0 when the process was already gone;
- "cred" events (real uid/gid changed): the ids before the call are those of the process's
  previous record (its exec); a set*id call of a process never seen before gives none;
- an anonymous executable (memfd): the exec's file lives on the kernel's internal shmem (or
  hugetlbfs) mount, the device of memfds fluxtui makes for comparison;
- a standard stream on an internet socket: /proc/PID/fd/0-2 at the time the record is read;
- memfd_create's name: the link of the returned fd while it is open; mount paths: the PATH
  records. Module parameters are not logged by audit;
- the exit event: exit_group's record, logged as the process ends (a process killed by a
  signal has none: the capability closes it when it is gone from /proc);
- the cgroup id: /proc/PID/cgroup and the cgroup's directory, remembered per pid like the
  start time.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

from fluxtui.collectors.audit_records import AuditEvent, untrusted
from fluxtui.collectors.bpf_structs import COMPAT_PREFIX, FX_MAX_NR
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.procstat import cgroup2_mount, read_start_ticks
from fluxtui.collectors.stdio_sockets import stdio_sockets
from fluxtui.events import ProcessKey

CRED_SYSCALLS = frozenset({"setuid", "setgid", "setreuid", "setregid", "setresuid",
                           "setresgid", "setuid32", "setgid32", "setreuid32", "setregid32",
                           "setresuid32", "setresgid32"})
EXEC_SYSCALLS = frozenset({"execve", "execveat"})
PATH_STRINGS = frozenset({"mount", "umount", "umount2", "pivot_root", "chroot"})
DELETED = " (deleted)"
STDIO_INET = "stdio on a network socket"
ANON_FILE = "anonymous file"
MEMFD_NAME_GONE = "(name not logged by audit, fd already closed)"
REMEMBERED = 65536  # pids whose start time and ids are kept


def memfd_devices() -> frozenset[tuple[int, int]]:
    """(major, minor) of the kernel's internal mounts where memfds live: shmem, and hugetlbfs
    for MFD_HUGETLB where the kernel has it."""
    found = set()
    for flags in (os.MFD_CLOEXEC, os.MFD_CLOEXEC | os.MFD_HUGETLB):
        try:
            fd = os.memfd_create("fluxtui-probe", flags)
        except OSError:
            continue
        try:
            dev = os.fstat(fd).st_dev
        finally:
            os.close(fd)
        found.add((os.major(dev), os.minor(dev)))
    return frozenset(found)


def _device(text: str) -> tuple[int, int] | None:
    try:
        major, minor = text.split(":")
        return int(major, 16), int(minor, 16)
    except ValueError:
        return None


@dataclass
class _Known:
    start_ticks: int
    uid: int
    gid: int
    cgroup_id: int = 0


class EventBuilder:
    """Turns audit events into KernelEvents; remembers per pid what later records need."""

    def __init__(self, names: dict[int, dict[int, str]], native_arch: int,
                 proc: str = "/proc",
                 memfd_devs: frozenset[tuple[int, int]] | None = None) -> None:
        self._names = names  # arch -> nr -> name
        self._native = native_arch
        self._proc = proc
        self._memfd_devs = memfd_devs if memfd_devs is not None else memfd_devices()
        self._cgroup_root = cgroup2_mount(f"{proc}/self/mountinfo")
        self._known: OrderedDict[int, _Known] = OrderedDict()
        self.unknown_cred = 0  # set*id calls of processes whose ids before the call are unknown

    def syscall_name(self, arch: int, nr: int) -> tuple[str, int] | None:
        """(name as the eBPF collector names it, its number there) of an audited syscall."""
        name = self._names.get(arch, {}).get(nr)
        if name is None:
            return None
        if arch == self._native:
            return name, nr
        return COMPAT_PREFIX + name, FX_MAX_NR + nr

    # --- /proc -------------------------------------------------------------------------------

    def _key(self, pid: int, uid: int, gid: int) -> tuple[ProcessKey, _Known | None]:
        """The process's key and what was known of it before this record."""
        ticks = read_start_ticks(pid, self._proc)
        before = self._known.get(pid)
        cgroup = self._cgroup_id(pid) if ticks is not None else 0
        if ticks is None:  # gone already: the start time seen earlier, if any
            ticks = before.start_ticks if before is not None else 0
        elif before is not None and before.start_ticks != ticks:
            before = None  # the pid was reused
        if not cgroup and before is not None:
            cgroup = before.cgroup_id
        self._known[pid] = _Known(ticks, uid, gid, cgroup)
        self._known.move_to_end(pid)
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)
        return ProcessKey(pid, ticks), before

    def cgroup_of(self, pid: int) -> int:
        known = self._known.get(pid)
        return known.cgroup_id if known is not None else 0

    def _cgroup_id(self, pid: int) -> int:
        """The cgroup v2 id (its directory's inode number, as bpf_get_current_cgroup_id)."""
        if self._cgroup_root is None:
            return 0
        try:
            with open(f"{self._proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
                path = next((line[3:].rstrip("\n") for line in f if line.startswith("0::")), "")
            return os.stat(self._cgroup_root + path).st_ino if path else 0
        except OSError:
            return 0

    def _parent(self, ppid: int) -> tuple[int, str, str]:
        """(start ticks, exe, comm) of the parent, from /proc; zeros when gone."""
        ticks = read_start_ticks(ppid, self._proc) or 0
        if not ticks:
            return 0, "", ""
        try:
            exe = os.readlink(f"{self._proc}/{ppid}/exe").removesuffix(DELETED)
        except OSError:
            exe = ""
        try:
            with open(f"{self._proc}/{ppid}/comm", encoding="utf-8", errors="replace") as f:
                comm = f.read().rstrip("\n")
        except OSError:
            comm = ""
        return ticks, exe, comm

    def _stdio_flags(self, pid: int) -> tuple[str, ...]:
        try:
            return (STDIO_INET,) if stdio_sockets(pid, self._proc) else ()
        except (OSError, ValueError):
            return ()

    def _fd_name(self, pid: int, fd: int) -> str:
        try:
            link = os.readlink(f"{self._proc}/{pid}/fd/{fd}")
        except OSError:
            link = ""
        if not link.startswith("/memfd:"):  # closed (or exec'd) before the record was read
            return MEMFD_NAME_GONE
        return link.removeprefix("/memfd:").removesuffix(DELETED)

    # --- the conversion ----------------------------------------------------------------------

    def build(self, event: AuditEvent) -> tuple[ProcessKey | None, int, list[KernelEvent]]:
        """(the caller, the syscall's number as eBPF counts it, the events) of one audited
        call; an exec that failed is a call without an event."""
        named = self.syscall_name(event.number("arch", 16), event.number("syscall"))
        if named is None:
            return None, -1, []
        name, nr = named
        base = name.removeprefix(COMPAT_PREFIX)
        pid, uid, gid = event.number("pid"), event.number("uid"), event.number("gid")
        key, before = self._key(pid, uid, gid)
        common = dict(timestamp=event.syscall.timestamp, key=key, tid=pid, uid=uid, gid=gid,
                      comm=event.text("comm"), cgroup_id=self.cgroup_of(pid))
        if base == "exit_group":  # the process ends: not a call that counts (eBPF's weight 0)
            self._known.pop(pid, None)
            return None, nr, [KernelEvent(kind="exit", **common)]  # type: ignore[arg-type]
        if base in EXEC_SYSCALLS:
            if event.field("success") != "yes":
                return key, nr, []  # as with eBPF: only an exec that succeeded is an event
            return key, nr, [self._exec(event, name, nr, common)]
        args = tuple(event.number(f"a{i}", 16) for i in range(4))
        strings = ("", "", "")
        aux = (0, 0)
        if base in PATH_STRINGS:
            names = [untrusted(p.get("name", "")) for p in event.paths][:3]
            strings = (*names, "", "", "")[:3]  # type: ignore[assignment]
        elif base == "memfd_create" and event.number("exit") >= 0:
            strings = (self._fd_name(pid, event.number("exit")), "", "")
        elif base == "capset" and event.capset:
            aux = (int(event.capset.get("cap_pe", "0"), 16),
                   int(event.capset.get("cap_pp", "0"), 16))
        out = [KernelEvent(kind="syscall", syscall=name, nr=nr, args=args, strings=strings,
                           aux=aux, **common)]  # type: ignore[arg-type]
        if base in CRED_SYSCALLS and event.field("success") == "yes":
            if before is None:
                self.unknown_cred += 1
            elif (before.uid, before.gid) != (uid, gid):
                out.append(KernelEvent(kind="cred", syscall=name, nr=nr,
                                       args=(before.uid, before.gid, uid, gid),
                                       **common))  # type: ignore[arg-type]
        return key, nr, out

    def _exec(self, event: AuditEvent, name: str, nr: int, common: dict[str, object]
              ) -> KernelEvent:
        pid, ppid = event.number("pid"), event.number("ppid")
        exe = event.text("exe")
        item0 = event.paths[0] if event.paths else {}
        filename = untrusted(item0.get("name", ""))
        if filename and not filename.startswith("/") and event.cwd:
            filename = os.path.join(event.cwd, filename)
        flags: list[str] = []
        if exe.endswith(DELETED) and _device(item0.get("dev", "")) in self._memfd_devs:
            flags.append(ANON_FILE)
        exe = exe.removesuffix(DELETED)
        flags += self._stdio_flags(pid)
        parent_ticks, parent_exe, parent_comm = self._parent(ppid)
        return KernelEvent(
            kind="exec", syscall=name, nr=nr, filename=filename, argv=event.argv(), exe=exe,
            ppid=ppid, parent_comm=parent_comm, euid=event.number("euid"), flags=tuple(flags),
            parent_start_ticks=parent_ticks, parent_exe=parent_exe,
            parent_flags=self._stdio_flags(ppid) if parent_ticks else (),
            **common)  # type: ignore[arg-type]
