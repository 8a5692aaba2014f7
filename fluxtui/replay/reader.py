"""Reading a recording (`--headless --output json` or `fluxtui demo --record`): plain or gzip,
one JSON document per line.

Lines that are not fluxtui documents (a log line, another program's JSON) are skipped and
counted. A fluxtui line that cannot be read (cut short, corrupt bytes, a truncated gzip member,
a document this version cannot rebuild) ends the reading there: what came before is played,
and `Damage` says on which line it stopped and why.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from fluxtui.ecs.common import STREAM_VERSION

# How our documents start (the writer puts @timestamp first): a line starting like this that
# is not valid JSON is a damaged document, not a foreign line.
DOCUMENT_START = b'{"@timestamp"'
GZIP_MAGIC = b"\x1f\x8b"
# A document longer than this is damage, not a document: memory stays bounded whatever the file
# holds (the largest real ones, a tick's process list on a big host, are a few MB).
MAX_LINE = 64 * 1024 * 1024


class RecordingError(Exception):
    """The recording cannot be opened at all (missing, unreadable)."""


@dataclass(frozen=True)
class Damage:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"stopped at line {self.line}: {self.reason}"


@dataclass
class ReadState:
    lines: int = 0  # lines read so far
    documents: int = 0
    foreign: int = 0  # lines skipped: not fluxtui documents
    damage: Damage | None = None


def open_recording(path: str) -> IO[bytes]:
    """The recording's bytes, decompressed when it is gzip (by its magic, whatever its name)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic == GZIP_MAGIC:
            return cast(IO[bytes], gzip.open(path, "rb"))
        return open(path, "rb")
    except OSError as exc:
        raise RecordingError(f"cannot open {path}: {exc.strerror or exc}") from None


def is_fluxtui(doc: Any) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("fluxtui"), dict)
            and "stream_version" in doc["fluxtui"] and isinstance(doc.get("event"), dict))


def documents(stream: IO[bytes], state: ReadState) -> Iterator[dict[str, Any]]:
    """The fluxtui documents of a recording, in order; stops at the first damage (recorded in
    `state.damage`)."""
    while True:
        try:
            raw = stream.readline(MAX_LINE + 1)
        except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip data
            state.damage = Damage(state.lines + 1, f"the compressed data ends or is corrupt "
                                                   f"({exc or type(exc).__name__})")
            return
        if not raw:
            return
        state.lines += 1
        complete = raw.endswith(b"\n")
        if len(raw) > MAX_LINE and not complete:
            state.damage = Damage(state.lines, f"a line longer than {MAX_LINE:,} bytes")
            return
        text = raw.strip()
        if not text:
            continue
        try:
            doc = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if text.startswith(DOCUMENT_START):
                why = "the line is cut short" if not complete else "the document is corrupt"
                state.damage = Damage(state.lines, why)
                return
            state.foreign += 1
            continue
        if not is_fluxtui(doc):
            state.foreign += 1
            continue
        version = doc["fluxtui"]["stream_version"]
        if not isinstance(version, int) or version > STREAM_VERSION:
            state.damage = Damage(state.lines, f"stream version {version!r} is newer than this "
                                               f"fluxtui reads ({STREAM_VERSION})")
            return
        state.documents += 1
        yield doc
