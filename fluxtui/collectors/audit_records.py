"""Audit record text -> fields, and the records of one syscall (same serial, SYSCALL first, EOE
last) gathered into one `AuditEvent`. Nothing here imports textual.

A record reads `audit(SECONDS.MILLIS:SERIAL): name=value ...`. Values the kernel does not trust
(comm, exe, paths, argv, the key) are either quoted, or hex-encoded when they hold a quote,
a space, a control or a non-ASCII byte; "(null)" is no value.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

AUDIT_SYSCALL = 1300
AUDIT_PATH = 1302
AUDIT_CWD = 1307
AUDIT_EXECVE = 1309
AUDIT_EOE = 1320
AUDIT_CAPSET = 1322

_HEADER = re.compile(r"^audit\((\d+)\.(\d+):(\d+)\):\s?")
_FIELD = re.compile(r'([\w\[\]]+)=("[^"]*"|\S*)')
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")
UNTRUSTED = frozenset({"comm", "exe", "name", "cwd", "key", "proctitle"})
PENDING_LIMIT = 4096  # syscalls whose EOE has not come yet; past it the oldest is given up


@dataclass(frozen=True)
class Record:
    kind: int
    timestamp: float
    serial: int
    fields: dict[str, str]


def untrusted(value: str) -> str:
    """A value the kernel logged with audit_log_untrustedstring, as text."""
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return value[1:-1]
    if value in ("(null)", "?"):
        return ""
    if _HEX.match(value):
        return bytes.fromhex(value).decode("utf-8", "replace")
    return value


def parse_record(kind: int, text: bytes | str) -> Record | None:
    """One record; None when the text has no audit(...) header."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    match = _HEADER.match(text)
    if match is None:
        return None
    seconds, millis, serial = match.groups()
    fields = {name: value for name, value in _FIELD.findall(text[match.end():])}
    return Record(kind, int(seconds) + int(millis) / 1000, int(serial), fields)


@dataclass
class AuditEvent:
    """The records of one audited syscall."""

    syscall: Record
    paths: list[dict[str, str]] = field(default_factory=list)
    execve: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    capset: dict[str, str] = field(default_factory=dict)

    def field(self, name: str, default: str = "") -> str:
        return self.syscall.fields.get(name, default)

    def number(self, name: str, base: int = 10, default: int = 0) -> int:
        try:
            return int(self.field(name), base)
        except ValueError:
            return default

    def text(self, name: str) -> str:
        return untrusted(self.field(name))

    def argv(self) -> tuple[str, ...]:
        """The exec's arguments; a long one is logged in pieces (aN_len, aN[0], aN[1], ...)."""
        try:
            argc = int(self.execve.get("argc", "0"))
        except ValueError:
            return ()
        args = []
        for i in range(argc):
            if f"a{i}" in self.execve:
                args.append(untrusted(self.execve[f"a{i}"]))
                continue
            pieces = []
            j = 0
            while f"a{i}[{j}]" in self.execve:
                pieces.append(untrusted(self.execve[f"a{i}[{j}]"]))
                j += 1
            if not pieces:
                break  # the rest was not logged (the kernel's limit on one event)
            args.append("".join(pieces))
        return tuple(args)


class Assembler:
    """Gathers records by serial: an event starts with a SYSCALL record that `wanted` accepts
    and ends with its EOE. Records of other events are ignored."""

    def __init__(self, wanted: Callable[[Record], bool]) -> None:
        self._wanted = wanted
        self._pending: OrderedDict[int, AuditEvent] = OrderedDict()
        self.incomplete = 0  # events given up before their EOE

    def add(self, record: Record) -> AuditEvent | None:
        """The finished event when `record` ends one."""
        if record.kind == AUDIT_SYSCALL:
            if not self._wanted(record):
                return None
            self._pending[record.serial] = AuditEvent(record)
            while len(self._pending) > PENDING_LIMIT:
                self._pending.popitem(last=False)
                self.incomplete += 1
            return None
        event = self._pending.get(record.serial)
        if event is None:
            return None
        if record.kind == AUDIT_EOE:
            del self._pending[record.serial]
            return event
        if record.kind == AUDIT_PATH:
            event.paths.append(record.fields)
        elif record.kind == AUDIT_EXECVE:
            event.execve.update(record.fields)
        elif record.kind == AUDIT_CWD:
            event.cwd = untrusted(record.fields.get("cwd", ""))
        elif record.kind == AUDIT_CAPSET:
            event.capset = record.fields
        return None
