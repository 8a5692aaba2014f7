"""The syscall capture's view of containers: the kernel's feed of cgroups and runtime set-ups
(fluxtui/collectors/container_trace.py), the runtime executables it trusts, and the container
each kernel event came from, resolved when the event is handled from the cgroup id the kernel
reported with it. Nothing here imports textual.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict, deque

from fluxtui.capabilities.lineage import ExeVerifier
from fluxtui.collectors.container_trace import ContainerTrace, SetnsTarget, TraceUnavailable
from fluxtui.collectors.kernel_event import KernelEvent, signed32
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.detection.container_index import ContainerResolver
from fluxtui.detection.runtime_setup import RuntimeSetup
from fluxtui.events import HOST, UNKNOWN, ContainerIdentity, ProcessKey

log = logging.getLogger(__name__)
NAMESPACES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time")
VERIFY_WAIT_S = 120.0  # the longest start() waits for the runtime executables' verification
MAX_SETNS = 4096  # threads with setns targets not matched to an event yet (oldest dropped)


class ContainerWatch:
    def __init__(self, resolver: ContainerResolver, verifier: ExeVerifier,
                 runtimes: list[str], proc: str = "/proc") -> None:
        self.resolver = resolver
        self.setup = RuntimeSetup()
        self._verifier = verifier
        self._runtimes = runtimes
        self._proc = proc
        self._trace: ContainerTrace | None = None
        self._reason = "not started"
        self.verified_runtimes: list[str] = []
        self.ready = threading.Event()  # runtime executables verified and handed to the kernel
        self._trace_loaded = threading.Event()  # start() tried to load the trace
        # (pid, tid) -> inode numbers of the files setns() was given, oldest first: matched to
        # the setns events of the syscall stream in order.
        self._setns: OrderedDict[tuple[int, int], deque[int]] = OrderedDict()

    def start(self) -> None:
        """Load the kernel feed, verify the runtime executables and hand them to it, and mark
        the runtime processes already running: all before returning. The caller attaches the
        syscall source after this, so that no container's set-up is ever seen by it without
        the kernel's marks (a container started in fluxtui's first seconds was judged like a
        workload, its runc's unshare and mounts alerted, when the verification still ran in
        the background). The verification (a package-database lookup and a hash per runtime)
        runs while the trace compiles; it seldom adds to the start. Without the trace,
        containers are still resolved (from /proc and rescans) but the runtime's set-up is not
        told apart."""
        verifying = threading.Thread(target=self._verify_runtimes, name="fluxtui-runtimes",
                                     daemon=True)
        verifying.start()
        try:
            self._trace = ContainerTrace(self.resolver.learn)
        except TraceUnavailable as exc:
            self._reason = str(exc)
            log.warning("container trace unavailable: %s", exc)
        else:
            self.resolver.index.live = True
            self._reason = ""
        finally:
            self._trace_loaded.set()
        self.resolver.index.scan()
        if not self.ready.wait(VERIFY_WAIT_S):
            # A verification this slow (a huge package database, a stalled disk) does not
            # hold the syscall capture back for ever; it hands over when it is done, and the
            # status says that set-ups are judged like anything else until then.
            log.warning("runtime executables still being verified after %.0f s; container "
                        "set-ups are judged like workloads until that ends", VERIFY_WAIT_S)

    def _verify_runtimes(self) -> None:
        found: dict[tuple[int, int], os.stat_result] = {}
        verified = []
        try:
            for path in self._runtimes:
                real = os.path.realpath(path)
                try:
                    if not self._verifier.verified(real):
                        continue
                    st = os.stat(real)
                except OSError:
                    continue
                found[(st.st_dev, st.st_ino)] = st
                verified.append(path)
            self._trace_loaded.wait()
            trace = self._trace
            if trace is not None:
                trace.set_runtimes(found.values())
                for key in self._running_runtimes(set(found)):
                    trace.mark_setup(key.pid)
                    self.setup.seed(key)
            self.verified_runtimes = verified
        except Exception:  # the trace closed meanwhile, or a map update failed
            log.warning("runtime executables not handed to the kernel", exc_info=True)
        finally:
            self.ready.set()

    def _running_runtimes(self, files: set[tuple[int, int]]) -> list[ProcessKey]:
        """Runtime daemons started before the trace (dockerd, containerd, shims): by the device
        and inode of their executable, outside containers."""
        found = []
        for entry in os.scandir(self._proc):
            if not entry.name.isdigit():
                continue
            try:
                st = os.stat(f"{entry.path}/exe")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in files:
                continue
            pid = int(entry.name)
            start = read_start_ticks(pid, self._proc)
            if start is None:
                continue
            key = ProcessKey(pid, start)
            if self.resolver.of_process(key).state == "host":
                found.append(key)
        return found

    def stop(self) -> None:
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.close()
        self.resolver.index.live = False

    def note(self) -> str:
        if self._trace is None:
            return f"no kernel feed ({self._reason}); runtime set-up not told apart"
        if not self.ready.is_set():
            return "verifying the runtime executables (set-ups judged as workloads until done)"
        index = self.resolver.index
        refused = f", {self.setup.refused} runtime execs from inside containers not exempt" \
            if self.setup.refused else ""
        return (f"{index.learnt} cgroups learnt, {len(self.verified_runtimes)} runtime "
                f"executables verified{refused}")

    @property
    def dropped(self) -> int:
        trace = self._trace
        return trace.dropped if trace is not None else 0

    def before_events(self) -> None:
        """Take every change the kernel sent up to now: the events about to be handled were
        all sent before this call."""
        trace = self._trace
        if trace is None:
            return
        for change in trace.drain():
            if isinstance(change, SetnsTarget):
                self._setns.setdefault((change.pid, change.tid), deque()).append(change.inode)
                while len(self._setns) > MAX_SETNS:  # the runtime's own, never looked up
                    self._setns.popitem(last=False)
                continue
            inside = self.resolver.of_cgroup(change.cgroup_id).is_container
            self.setup.kernel(change, inside)

    def container_of(self, event: KernelEvent) -> ContainerIdentity:
        """From the cgroup id of the event; from /proc when the id is unknown and the process
        still runs; else UNKNOWN."""
        found = self.resolver.of_cgroup(event.cgroup_id)
        if found.state == "unknown":
            found = self.resolver.of_process(event.key)
        else:
            self.resolver.observe(event.key, found)
        return found

    def target_of(self, event: KernelEvent) -> ContainerIdentity | None:
        """Where the target of a ptrace / process_vm_writev / setns runs, when it can be read
        now: the target pid's cgroup, or (setns) whether the namespace file the process holds
        is one of the host's: fluxtui's own (it runs in the host's namespaces; pid 1's may be
        unreadable even to root), as the kernel read it at the call when it could."""
        if event.kind != "syscall":
            return None
        if event.syscall in ("ptrace", "process_vm_writev"):
            pid = signed32(event.args[1] if event.syscall == "ptrace" else event.args[0])
            if pid <= 0:
                return None
            found = self._of_pid(pid)
            return found if found.state != "unknown" else None
        if event.syscall == "setns":
            recorded = self._setns.get((event.key.pid, event.tid))
            if recorded:
                inode = recorded.popleft()
                if not recorded:
                    del self._setns[(event.key.pid, event.tid)]
                # What the fd held at the call, read by the kernel: known even when the
                # process has exited since.
                return HOST if inode in self._host_namespace_inodes() else UNKNOWN
            fd = signed32(event.args[0])
            try:
                target = os.readlink(f"{self._proc}/{event.key.pid}/fd/{fd}")
            except OSError:
                return None
            if read_start_ticks(event.key.pid, self._proc) != event.key.start_ticks:
                return None
            return HOST if target in self._host_namespaces() else UNKNOWN
        return None

    def _of_pid(self, pid: int) -> ContainerIdentity:
        start = read_start_ticks(pid, self._proc)
        return UNKNOWN if start is None else self.resolver.of_process(ProcessKey(pid, start))

    def _host_namespace_inodes(self) -> set[int]:
        found = set()
        for name in NAMESPACES:
            try:
                found.add(os.stat(f"{self._proc}/self/ns/{name}").st_ino)
            except OSError:
                continue
        return found

    def _host_namespaces(self) -> set[str]:
        found = set()
        for name in NAMESPACES:
            try:
                found.add(os.readlink(f"{self._proc}/self/ns/{name}"))
            except OSError:
                continue
        return found
