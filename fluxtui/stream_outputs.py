"""Where the headless stream goes besides stdout: a file rotated by size, and the systemd journal.

`RotatingFile` is what `--stream-file` writes to: the file is created 0600 (documents carry
command lines), never through a symlink, and when the next line would take it past `max_bytes`
it is renamed to PATH.1 (PATH.1 to PATH.2, ... up to `backups`; the oldest is deleted) and a new
PATH is started, the scheme log shippers (Filebeat, Vector, Fluent Bit) follow by inode.

`JournalDocuments` sends stream documents to the journal, one entry each: the headless mode
sends alerts there whenever a journal runs, and with `--output journal` also guard and socket
events (not the per-tick documents, syscall events or exits, which would flood it).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from fluxtui.config import Config
from fluxtui.journal import JOURNAL_SOCKET, JournalUnavailable, JournalWriter

# Event datasets that --output journal sends besides alerts (see JournalDocuments).
JOURNAL_DATASETS = frozenset({"fluxtui.guard", "fluxtui.connections"})
# journald priorities (syslog levels)
CRITICAL, ERROR, WARNING, NOTICE, INFO = 2, 3, 4, 5, 6


class OutputError(Exception):
    """An output the user asked for cannot be opened; the message says why (one line)."""


class StreamFileError(OutputError):
    """The stream file cannot be opened or rotated."""


class RotatingFile:
    """A text sink with size-based rotation; `write` takes whole lines (the headless runner
    writes one document per call), so a line is never split across two files."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        if max_bytes <= 0:
            raise StreamFileError("the rotation size must be positive")
        if backups < 0:
            raise StreamFileError("the number of rotated files cannot be negative")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotations = 0
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise StreamFileError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise StreamFileError(f"{self.path} is not a regular file")
        self._fd, self._size = fd, info.st_size

    def write(self, text: str) -> int:
        self.writelines((text,))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Whole lines, as few write(2) calls as the rotation allows: one per file touched."""
        chunk: list[bytes] = []
        size = self._size
        for text in lines:
            data = text.encode("utf-8", "backslashreplace")
            if size > 0 and size + len(data) > self.max_bytes:
                self._append(chunk)
                chunk = []
                self.rotate()
                size = self._size
            chunk.append(data)
            size += len(data)
        self._append(chunk)

    def _append(self, chunk: list[bytes]) -> None:
        if not chunk:
            return
        data = b"".join(chunk)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        try:
            if self.backups == 0:
                os.unlink(self.path)
            else:
                for index in range(self.backups - 1, 0, -1):
                    older = f"{self.path}.{index}"
                    if os.path.lexists(older):
                        os.replace(older, f"{self.path}.{index + 1}")
                os.replace(self.path, f"{self.path}.1")
        except OSError as exc:
            raise StreamFileError(f"cannot rotate {self.path}: {exc.strerror or exc}") from None
        finally:
            self._open()
        self.rotations += 1

    def flush(self) -> None:
        """Every write already reached the kernel (no user-space buffer)."""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def journal_priority(doc: dict[str, Any]) -> int:
    event = doc.get("event", {})
    if event.get("kind") == "alert":
        severity = event.get("severity")
        if not isinstance(severity, int | float):
            return WARNING
        if severity >= 99:
            return CRITICAL
        if severity >= 73:
            return ERROR
        return WARNING if severity >= 47 else NOTICE
    return NOTICE if event.get("outcome") == "failure" else INFO


def technique_of(doc: dict[str, Any]) -> str | None:
    """The first ATT&CK technique id of a document (ECS keeps them in an array)."""
    found = doc.get("threat", {}).get("technique", {}).get("id")
    if isinstance(found, list):
        found = found[0] if found else None
    return str(found) if found else None


def journal_message(doc: dict[str, Any]) -> str:
    event = doc.get("event", {})
    text = str(doc.get("message") or event.get("action") or event.get("dataset") or "event")
    technique = technique_of(doc)
    prefix = "alert" if event.get("kind") == "alert" else str(event.get("dataset", "event"))
    return f"{prefix}{f' [{technique}]' if technique else ''}: {text}"


class JournalDocuments:
    """Sends stream documents to the journal as they are written (on the headless writer
    thread, never on a publisher's). `alerts_only` sends alerts and nothing else; otherwise
    alerts and the event datasets in `JOURNAL_DATASETS` (guard decisions and prompts, socket
    events, which their collectors rate-limit). The rest stays out of the journal: per-tick
    metric and state documents, every exec and high-signal syscall, process exits; they would
    flood it (scrape figures with --prometheus, keep the full stream in a --stream-file).
    `skip_datasets` names datasets that reach the journal by another way (the guard writes its
    own decisions when `guard.journal` is on). Each entry carries the ECS document as
    FLUXTUI_ECS (JSON) and its rule, technique and dataset as fields; entries the journal
    refuses are counted in `dropped`, never retried."""

    def __init__(self, writer: JournalWriter, alerts_only: bool,
                 skip_datasets: frozenset[str] = frozenset()) -> None:
        self.writer = writer
        self.alerts_only = alerts_only
        self.skip_datasets = skip_datasets
        self.sent = 0
        self.dropped = 0
        self.last_error = ""

    def dropped_count(self) -> int:
        return self.dropped

    def wanted(self, doc: dict[str, Any]) -> bool:
        event = doc.get("event", {})
        kind = event.get("kind")
        if kind == "alert":
            return True
        dataset = event.get("dataset")
        return (not self.alerts_only and kind == "event" and dataset in JOURNAL_DATASETS
                and dataset not in self.skip_datasets)

    def __call__(self, doc: dict[str, Any]) -> None:
        if not self.wanted(doc):
            return
        rule = doc.get("rule", {})
        fields = {
            "FLUXTUI_DATASET": doc.get("event", {}).get("dataset"),
            "FLUXTUI_KIND": doc.get("event", {}).get("kind"),
            "FLUXTUI_RULE": rule.get("id") or rule.get("name"),
            "FLUXTUI_TECHNIQUE": technique_of(doc),
            "FLUXTUI_PROCESS_PID": doc.get("process", {}).get("pid"),
            "FLUXTUI_ECS": json.dumps(doc, default=str),
        }
        try:
            self.writer.send(journal_message(doc), journal_priority(doc),
                             **{k: v for k, v in fields.items() if v is not None})
        except (JournalUnavailable, OSError) as exc:
            self.dropped += 1
            self.last_error = str(exc)
        else:
            self.sent += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.close()


@dataclass(frozen=True)
class StreamSettings:
    output: str = "json"  # json, text, or journal
    file: str | None = None  # None: stdout
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 5
    alerts_to_journal: bool = True
    journal_socket: str = JOURNAL_SOCKET


@dataclass
class HeadlessOutputs:
    out: TextIO  # the headless runner only calls write() and flush()
    sinks: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for stderr, one line each

    def journal_sinks(self) -> list[JournalDocuments]:
        return [sink for sink in self.sinks if isinstance(sink, JournalDocuments)]

    def close(self) -> None:
        if self.out is not sys.stdout:
            self.out.close()
        for sink in self.journal_sinks():
            sink.close()


def open_outputs(config: Config, settings: StreamSettings) -> HeadlessOutputs:
    """The stream's destination and the journal sink. `--output journal` without a journal is
    an error; alerts to the journal without one is a note, and the stream goes on."""
    skip = frozenset({"fluxtui.guard"}) if config.guard.journal else frozenset()
    if settings.output == "journal":
        try:
            writer = JournalWriter(settings.journal_socket)
        except JournalUnavailable as exc:
            raise OutputError(f"--output journal: {exc}") from None
        return HeadlessOutputs(sys.stdout, [JournalDocuments(writer, False, skip)])
    out: TextIO = sys.stdout
    if settings.file is not None:
        out = cast(TextIO, RotatingFile(settings.file, settings.max_bytes, settings.backups))
    outputs = HeadlessOutputs(out)
    if settings.alerts_to_journal:
        try:
            writer = JournalWriter(settings.journal_socket)
        except JournalUnavailable as exc:
            outputs.notes.append(f"alerts are not sent to the journal: {exc}")
        else:
            outputs.sinks.append(JournalDocuments(writer, alerts_only=True))
    return outputs
