"""Who started whom, as the kernel reported it, and which executables are verified.

`Lineage` records each process's parent (pid + start time, so PID reuse never links the wrong
process), executable and arguments: from exec events (read in the kernel when the exec
succeeded, so known even after the parent exited) and, for processes that never exec'd while
fluxtui watched, from the process table. It answers two questions for the rules and the risk
scorer:
- the real parent of a process, looking through wrappers (`rules.wrappers`: timeout, env, sudo,
  nice, nohup, setsid, ... when verified) to the program that asked for it;
- where a child's findings stop propagating upwards (`stop_reason`): at init (pid 1) and kernel
  threads, and at a session leader that runs a verified executable (a log-in shell, an sshd
  session, a terminal's shell, a service manager's unit): they start everything below them, so
  blaming them for it would only blur the table. A session leader running an unverified
  executable (an implant that called setsid) is not a stop. Names are never used.

`ExeVerifier` is the guard's verification of an executable (fluxtui/guard/identity.py: owned by a
package whose database still has its checksum, in a root-owned system directory) applied to a
path, cached by the file's identity (device, inode, size, mtime, ctime).
Nothing here imports textual.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.events import ProcessKey, ProcessRow
from fluxtui.guard.identity import (
    ExeKey,
    PackageClaim,
    exe_flags,
    hash_file,
    in_system_dir,
    package_owner,
)

MAX_NODES = 65536
PRUNE_EVERY = 30  # ticks (record_rows calls) between two passes that forget unneeded nodes


class ExeVerifier:
    """`verified(path)`: package-owned, unmodified, in a root-owned system directory."""

    def __init__(self, system_dirs: Iterable[str],
                 owner: Callable[[str], PackageClaim | None] = package_owner) -> None:
        self.system_dirs = tuple(system_dirs)
        self._owner = owner
        self._cache: dict[str, tuple[ExeKey, bool]] = {}

    def verified(self, path: str) -> bool:
        if not path.startswith("/") or exe_flags(path):
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            key = ExeKey.of(st)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
            claim = self._owner(path)
            ok = False
            if claim is not None and claim.digest is not None:
                digest = hash_file(fd, (claim.algorithm,))[claim.algorithm]
                ok = (digest == claim.digest.lower()
                      and in_system_dir(path, st, self.system_dirs) is None)
        except OSError:
            return False
        finally:
            os.close(fd)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[path] = (key, ok)
        return ok


@dataclass(slots=True)
class Node:
    parent: ProcessKey | None
    exe: str = ""
    args: tuple[str, ...] = ()  # argv[1:] as exec'd ("" entries: not captured)
    uid: int | None = None
    name: str = ""
    needed: int = 0  # the last pruning pass that found it live or an ancestor of a live one


def session_of(pid: int, proc: str = "/proc") -> tuple[int, int] | None:
    """(session id, start ticks) of a live process, None when it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[3]), int(fields[19])


class Lineage:
    def __init__(self, verified: Callable[[str], bool], wrappers: Iterable[str] = (),
                 proc: str = "/proc") -> None:
        self.verified = verified
        self.wrappers = frozenset(wrappers)
        self._proc = proc
        self._nodes: OrderedDict[ProcessKey, Node] = OrderedDict()
        self._pass = 0
        self._ticks = 0
        self._unparented: set[ProcessKey] = set()  # rows whose parent was not among the rows

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def _put(self, key: ProcessKey, node: Node) -> None:
        node.needed = self._pass
        self._nodes[key] = node
        self._nodes.move_to_end(key)
        while len(self._nodes) > MAX_NODES:
            self._nodes.popitem(last=False)

    def record_exec(self, ev: KernelEvent) -> None:
        parent = ev.parent_key if ev.parent_start_ticks else None
        self._put(ev.key, Node(parent, ev.exe or ev.filename, tuple(ev.argv[1:]), ev.uid,
                               ev.name))
        if parent is not None and ev.parent_exe:
            known = self._nodes.get(parent)
            if known is None:
                self._put(parent, Node(None, ev.parent_exe, name=ev.parent_comm))
            elif not known.exe:
                known.exe = ev.parent_exe

    def record_rows(self, rows: dict[ProcessKey, ProcessRow],
                    appeared: Iterable[ProcessKey] | None = None) -> None:
        """Processes of the table not known from an exec event (started before fluxtui, or
        forked without exec): parent resolved by pid among the rows of the same tick.
        `appeared`: the rows new since the last call (None: look at every row); those whose
        parent was not found yet are looked at again, and every row once a pruning pass (a
        node forgotten at MAX_NODES comes back)."""
        nodes = self._nodes
        # Known processes with a known parent (nearly all, tick after tick) need nothing.
        full = appeared is None or (self._ticks + 1) % PRUNE_EVERY == 0
        candidates = rows.keys() if full else {*(appeared or ()), *self._unparented}
        todo = [key for key in candidates
                if key in rows and ((node := nodes.get(key)) is None or node.parent is None)]
        by_pid = {key.pid: key for key in rows} if todo else {}
        unparented = set()
        for key in todo:
            row, node = rows[key], nodes.get(key)
            if node is None:
                node = Node(by_pid.get(row.ppid), row.exe, tuple(row.cmdline[1:]), None,
                            row.name)
                self._put(key, node)
            elif row.ppid in by_pid:
                node.parent = by_pid[row.ppid]
            if node.parent is None and row.ppid != 0:  # pid 0: init, kthreadd have none
                unparented.add(key)
        self._unparented = unparented
        self._ticks += 1
        if self._ticks % PRUNE_EVERY == 0:
            self.prune(rows)

    def prune(self, live: Iterable[ProcessKey]) -> int:
        """Forget processes that are neither live nor an ancestor of a live one, once a whole
        pass (PRUNE_EVERY ticks) has gone by without them being needed: ample time for an
        exited process's final record and its findings to reach its ancestors. Without it
        every exited process stayed until MAX_NODES (about 1 KB each with its argv) on a
        machine that starts many. Returns how many were forgotten."""
        self._pass += 1
        for key in live:
            current: ProcessKey | None = key
            while current is not None:
                node = self._nodes.get(current)
                if node is None or node.needed == self._pass:
                    break
                node.needed = self._pass
                current = node.parent
        stale = [key for key, node in self._nodes.items() if node.needed < self._pass - 1]
        for key in stale:
            del self._nodes[key]
        return len(stale)

    def node(self, key: ProcessKey) -> Node | None:
        return self._nodes.get(key)

    def parent(self, key: ProcessKey) -> ProcessKey | None:
        node = self._nodes.get(key)
        return None if node is None else node.parent

    def exe(self, key: ProcessKey) -> str:
        node = self._nodes.get(key)
        return "" if node is None else node.exe

    def real_parent(self, key: ProcessKey, limit: int = 8) -> tuple[ProcessKey | None,
                                                                    tuple[str, ...]]:
        """The parent, looking through verified wrappers; with the wrappers' executables."""
        parent = self.parent(key)
        skipped: list[str] = []
        while parent is not None and len(skipped) < limit:
            exe = self.exe(parent)
            if exe not in self.wrappers or not self.verified(exe):
                break
            skipped.append(exe)
            parent = self.parent(parent)
        return parent, tuple(skipped)

    def stop_reason(self, key: ProcessKey) -> str | None:
        """Why findings do not propagate to `key` (None: they do)."""
        if key.pid <= 1:
            return "init"
        parent = self.parent(key)
        if parent is not None and parent.pid == 2:
            return "kernel thread"
        session = session_of(key.pid, self._proc)
        if session is None or session[1] != key.start_ticks:
            return None  # exited: it cannot be a log-in session any more, blame it
        exe = self.exe(key)
        if session[0] == key.pid and exe and self.verified(exe):
            return f"session leader running {exe}"
        return None

    def ancestors(self, key: ProcessKey, depth: int) -> list[ProcessKey]:
        """Up to `depth` ancestors that findings propagate to, nearest first, stopping before
        the first stop (see `stop_reason`). Verified wrappers (timeout, sudo, ...) are passed
        through without blame: they ran the command for someone."""
        out: list[ProcessKey] = []
        seen = {key}
        current = key
        while len(out) < depth:
            parent = self.parent(current)
            if parent is None or parent in seen:
                break
            seen.add(parent)
            if self.stop_reason(parent) is not None:
                break
            current = parent
            exe = self.exe(parent)
            if exe in self.wrappers and self.verified(exe):
                continue
            out.append(parent)
        return out
