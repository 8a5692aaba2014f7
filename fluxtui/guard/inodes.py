"""Protection that follows the file, not its name.

Every inode that has been a protected credential stays protected (same group, same rules)
wherever it is renamed or linked, whatever its new name, until its last link is gone. It keeps
its fanotify inode mark (marks belong to inodes, so they follow renames), and the guard decides
by inode identity, never by the name an open came through.

The identities are kept as file handles (name_to_handle_at) in a root-owned state file, so a
restart finds them again by handle (open_by_handle_at), wherever they are then: a key renamed
to `~/k` while fluxtui was stopped is protected again at start. A handle carries the inode's
generation, so an inode number reused by another file is not mistaken for a credential.

Owned by the responder thread (single writer). Nothing here opens a file for reading: the
identity of a file is taken through an O_PATH fd, which raises no fanotify event (the responder
would otherwise wait on itself).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxtui.collectors.fanotify import (
    FAN_MARK_IGNORED_MASK,
    FAN_MARK_IGNORED_SURV_MODIFY,
    FAN_OPEN_PERM,
    FanotifyError,
    FanotifyGroup,
)
from fluxtui.collectors.file_handles import FileHandle, handle_of_fd, mount_point, open_by_handle
from fluxtui.guard.catalogue import Catalogue, Group
from fluxtui.policy_files import UnsafeFileError, atomic_write, read_policy_file

STATE_VERSION = 1
MAX_TRACKED = 10_000  # inodes followed by handle: kept across restarts, checked every sweep
# Beyond MAX_TRACKED (a user can make ten thousand credential-named files in a minute), inodes
# are still followed while fluxtui runs: known by identity only, not saved, never pruned (an
# inode number reused later by another file is protected too: the safe side).
MAX_UNTRACKED = 200_000


@dataclass(frozen=True, slots=True)
class ProtectedFile:
    path: str  # the name the open came through (or the planned path)
    group: Group
    credential: str = ""  # the path it was protected as, when it differs from `path`

    @property
    def protected_as(self) -> str:
        return self.credential or self.path

    def seen_as(self, path: str) -> ProtectedFile:
        """The same credential, opened through another name (a link, a new name)."""
        if path == self.path:
            return self
        return ProtectedFile(path, self.group, self.protected_as)


@dataclass(frozen=True, slots=True)
class Tracked:
    protected: ProtectedFile
    handle: FileHandle
    mount: str  # where its file system was mounted when it was seen (to open the handle)


def protect_inode(path: str, fan: FanotifyGroup) -> None:
    """Put the permission mark on the inode at `path` (an O_PATH fd's /proc/self/fd link), its
    ignore mark (if it had one as a non-credential) removed first: an ignored mask wins over
    the mask, so a credential must never keep one."""
    with contextlib.suppress(FanotifyError):
        fan.unmark(path, FAN_OPEN_PERM, FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY)
    fan.mark(path, FAN_OPEN_PERM)


class ProtectedInodes:
    def __init__(self, catalogue: Catalogue, state_path: str | None) -> None:
        self.catalogue = catalogue
        self.state_path = Path(state_path) if state_path else None
        self.inodes: dict[tuple[int, int], ProtectedFile] = {}  # what the responder reads
        self.tracked: dict[tuple[int, int], Tracked] = {}
        self.problems: list[str] = []
        self.save_error: str | None = None
        self.dirty = False  # changed since the state was last handed out for saving
        self._mounts: dict[int, str] = {}

    def get(self, dev: int, ino: int) -> ProtectedFile | None:
        return self.inodes.get((dev, ino))

    def protects(self, fd: int, key: tuple[int, int]) -> bool:
        """Whether the file open on `fd` (its (dev, ino) is `key`) is a protected inode (also one
        followed beyond MAX_TRACKED, by identity only). An entry whose handle differs belongs
        to a file that is gone (its inode number reused): it is forgotten here."""
        tracked = self.tracked.get(key)
        if tracked is None:
            return key in self.inodes  # followed beyond MAX_TRACKED: no handle to compare
        try:
            same = handle_of_fd(fd).key == tracked.handle.key
        except OSError:
            return True  # cannot tell: treat it as protected (never ignored)
        if not same:
            del self.tracked[key]
            self.inodes.pop(key, None)
            self.dirty = True
        return same

    def __len__(self) -> int:
        return len(self.inodes)

    # --- adding ------------------------------------------------------------------------------

    def track_path(self, path: str, group: Group, fan: FanotifyGroup) -> str | None:
        """Protect the file at `path` (a planned credential) by inode; returns a problem, or
        None (also when the file went away meanwhile: the re-plan that follows sees it)."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            key = (st.st_dev, st.st_ino)
            handle = handle_of_fd(fd)
            protect_inode(f"/proc/self/fd/{fd}", fan)  # again: harmless when it is there
        except (OSError, FanotifyError) as exc:
            return f"cannot protect {path}: {exc}"
        finally:
            os.close(fd)
        old = self.tracked.get(key)
        if old is None or old.handle.key != handle.key:
            # New, or an inode number that belonged to a file now gone (another generation).
            self._add(key, ProtectedFile(path, group), handle)
        return None

    def track_fd(self, fd: int, protected: ProtectedFile, fan: FanotifyGroup) -> None:
        """Protect the file open on `fd` (an event's fd, found by its name in a marked
        directory before any plan listed it): marked at once through the fd."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in self.tracked:
            return
        protect_inode(f"/proc/self/fd/{fd}", fan)
        self._add(key, protected, handle_of_fd(fd))

    def _add(self, key: tuple[int, int], protected: ProtectedFile, handle: FileHandle) -> None:
        if key not in self.tracked and len(self.tracked) >= MAX_TRACKED:
            # Once the registry was full, a key made later lost its protection on its first
            # rename (guard2's attack: 10,000 empty files named id_*, then `mv` the new key).
            if key not in self.inodes and len(self.inodes) - len(self.tracked) >= MAX_UNTRACKED:
                self._problem(f"more than {MAX_TRACKED + MAX_UNTRACKED} protected inodes: "
                              "the newest are protected by name only")
                return
            self.inodes[key] = protected
            self._problem(f"more than {MAX_TRACKED} protected inodes: the newest are followed "
                          "only while fluxtui runs (not across a restart)")
            return
        mount = self._mount(handle.mount_id)
        self.tracked[key] = Tracked(protected, handle, mount)
        self.inodes[key] = protected
        self.dirty = True

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def _mount(self, mount_id: int) -> str:
        found = self._mounts.get(mount_id)
        if found is None:
            found = mount_point(mount_id) or ""
            self._mounts[mount_id] = found
        return found

    # --- keeping it right ----------------------------------------------------------------------

    def prune(self) -> int:
        """Forget inodes whose last link is gone (the kernel dropped their marks with them).
        Returns how many were forgotten."""
        gone = [key for key, t in self.tracked.items() if not self._alive(t)]
        for key in gone:
            del self.tracked[key]
            self.inodes.pop(key, None)
        if gone:
            self.dirty = True
        return len(gone)

    def _alive(self, t: Tracked) -> bool:
        fd = self._open(t)
        if fd is None:
            return False
        try:
            return os.fstat(fd).st_nlink > 0
        except OSError:
            return False
        finally:
            os.close(fd)

    def _open(self, t: Tracked) -> int | None:
        """An O_PATH fd on the tracked inode, None when it no longer exists (ESTALE)."""
        if not t.mount:
            return None
        try:
            mount_fd = os.open(t.mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return open_by_handle(mount_fd, t.handle)
        except OSError as exc:
            if exc.errno not in (errno.ESTALE, errno.ENOENT):
                self.problems.append(f"cannot reopen {t.protected.path}: {exc.strerror}")
            return None
        finally:
            os.close(mount_fd)

    # --- the state file ------------------------------------------------------------------------

    def state(self) -> bytes:
        """The state to save (call on the owning thread, write anywhere)."""
        self.dirty = False
        entries = [{"handle_type": t.handle.handle_type, "handle": t.handle.data.hex(),
                    "mount": t.mount, "dev": key[0], "ino": key[1],
                    "group": t.protected.group.name, "path": t.protected.protected_as}
                   for key, t in self.tracked.items()]
        return json.dumps({"version": STATE_VERSION, "inodes": entries}, indent=1).encode()

    def save(self, data: bytes) -> None:
        """Write a state (from `state()`) atomically (any thread; the writes are serialised by
        the caller's single worker order). A failure is kept in `save_error`."""
        if self.state_path is None:
            return
        try:
            self.state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.state_path, data, mode=0o600)
        except OSError as exc:
            self.save_error = f"cannot save protected inodes to {self.state_path}: {exc}"
        else:
            self.save_error = None

    def restore(self, fan: FanotifyGroup) -> None:
        """Protect again, by handle, every inode the state file lists that still has a link,
        wherever it is now. A refused or unreadable state is reported and left untouched."""
        if self.state_path is None:
            return
        try:
            raw = read_policy_file(self.state_path)
            data = json.loads(raw)
            entries = _entries(data)
        except FileNotFoundError:
            return
        except (OSError, UnsafeFileError, ValueError) as exc:
            self.problems.append(f"protected inodes not restored from {self.state_path}: {exc}")
            return
        groups = {g.name: g for g in self.catalogue.groups}
        for entry in entries:
            group = groups.get(entry["group"])
            if group is None:
                continue  # a group no longer in the catalogue
            handle = FileHandle(entry["handle_type"], bytes.fromhex(entry["handle"]), 0)
            t = Tracked(ProtectedFile(entry["path"], group), handle, entry["mount"])
            fd = self._open(t)
            if fd is None:
                continue  # its last link went while fluxtui was stopped
            try:
                st = os.fstat(fd)
                if st.st_nlink == 0:
                    continue
                protect_inode(f"/proc/self/fd/{fd}", fan)
                key = (st.st_dev, st.st_ino)
                self.tracked[key] = t
                self.inodes[key] = t.protected
            except (OSError, FanotifyError) as exc:
                self.problems.append(f"cannot protect {entry['path']} again: {exc}")
            finally:
                os.close(fd)


def _entries(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION \
            or not isinstance(data.get("inodes"), list):
        raise ValueError(f"not a version {STATE_VERSION} state")
    fields = {"handle_type": int, "handle": str, "mount": str, "group": str, "path": str}
    out = []
    for item in data["inodes"]:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), t)
                                                 for k, t in fields.items()):
            raise ValueError("an entry is malformed")
        out.append(item)
    return out

