"""Which processes are a container runtime setting a container up, as opposed to the workload.

runc, crun, conmon and containerd-shim unshare namespaces, mount, pivot_root and change
credentials before they exec the container's entrypoint: their job, not an escape. The kernel
(bpf_programs/containers.bpf.c) marks a process as in set-up when it execs a runtime executable
that fluxtui verified (package-owned, unmodified; matched by device and inode, so neither a
name, nor a path in another mount namespace, nor a copy passes), and every process such a
process forks. An exec of an unlinked file keeps the mark (runc re-executes itself from a
memfd), and so does a runtime re-executing itself, while the process is still in the host's
mount namespace; any other exec ends it, and so does any exec in another mount namespace: the
entrypoint's, into the container's root file system (even when the entrypoint is a host runc
mounted into the container). The kernel sends each change (`SetupChange`); this tracker
replays them in the order of the syscall stream, so the entrypoint's exec event ends the set-up
exactly where it happened.

A runtime exec by a process that is already inside a container does not begin a set-up (an
escaped workload, or a host path mounted into the container, could exec the real runc); nor do
the processes it forks. Nothing here imports textual.
"""

from __future__ import annotations

from collections import deque

from fluxtui.collectors.container_trace import SetupChange
from fluxtui.events import ProcessKey

# What a runtime does while setting a container up: not counted toward the risk of its
# processes (the events themselves are still recorded and shown).
SETUP_SYSCALLS = frozenset({
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsmount",
    "move_mount", "open_tree", "mount_setattr", "capset", "setuid", "setgid", "setresuid",
    "setresgid", "setreuid", "setregid", "setgroups", "prctl", "clone", "clone3", "execve",
    "execveat", "memfd_create", "keyctl", "sethostname", "setdomainname", "seccomp", "openat",
    "open", "openat2", "bpf",
})
MAX_TRACKED = 16384


class RuntimeSetup:
    def __init__(self) -> None:
        self._active: set[ProcessKey] = set()
        self._pending: dict[ProcessKey, deque[str]] = {}  # the kernel's exec verdicts, in order
        self._refused: set[int] = set()  # pids whose runtime exec came from inside a container
        self.refused = 0  # runtime execs refused, for the status line
        self.seen_this_tick: set[ProcessKey] = set()  # in set-up at some point this tick

    def kernel(self, change: SetupChange, inside_container: bool) -> None:
        """One change the kernel sent; `inside_container`: the cgroup it came from is a
        container's."""
        key = ProcessKey(change.pid, change.start_ticks)
        if change.kind == "fork":
            if change.parent_pid in self._refused:
                self._refused.add(change.pid)
                return
            self._active.add(key)
            self.seen_this_tick.add(key)
            return
        refused = change.pid in self._refused or (change.kind == "begin" and inside_container)
        verdict = change.kind
        if refused:
            if change.pid not in self._refused:
                self.refused += 1
                self._refused.add(change.pid)
            verdict = "end" if change.kind == "end" else "refused"
        self._pending.setdefault(key, deque()).append(verdict)
        if len(self._active) > MAX_TRACKED or len(self._pending) > MAX_TRACKED:
            self._active.clear()  # bounded; a lost mark errs on the side of an alert
            self._pending.clear()

    def seed(self, key: ProcessKey) -> None:
        """A runtime process found running at start (the kernel was told too)."""
        self._active.add(key)

    def on_exec(self, key: ProcessKey, anonymous: bool) -> None:
        """The exec event of `key` in the syscall stream: applies the kernel's verdict on it."""
        queue = self._pending.get(key)
        verdict = queue.popleft() if queue else None
        if queue is not None and not queue:
            del self._pending[key]
        if verdict is None:  # the kernel sent nothing: not a runtime, or its event was lost
            verdict = "keep" if key in self._active and anonymous else "end"
        if verdict in ("begin", "keep"):
            self._active.add(key)
            self.seen_this_tick.add(key)
        else:
            self._active.discard(key)
            if verdict == "end":
                self._refused.discard(key.pid)

    def active(self, key: ProcessKey) -> bool:
        return key in self._active

    def exited(self, key: ProcessKey) -> None:
        self._active.discard(key)
        self._pending.pop(key, None)
        self._refused.discard(key.pid)

    def new_tick(self) -> set[ProcessKey]:
        """The processes in set-up at some point since the last call (and those still in it)."""
        # Those in set-up now carry over: a set-up that ends or exits next tick is covered.
        seen, self.seen_this_tick = self.seen_this_tick | self._active, set(self._active)
        return seen
