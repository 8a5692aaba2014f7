"""Writing to the systemd journal over its native protocol (no libsystemd needed)."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping
from typing import Any

from fluxtui.untrusted_text import only_escaped_bytes

JOURNAL_SOCKET = "/run/systemd/journal/socket"


class JournalUnavailable(Exception):
    """No journal to write to; the message says why."""


def encode_journal_fields(fields: Mapping[str, Any]) -> bytes:
    """The journald native protocol: KEY=value lines; a value holding a newline is sent as
    KEY, newline, its length as 64-bit little endian, the bytes, newline."""
    out = bytearray()
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bytes):
            data = value
        else:  # undecodable bytes of a name go back to the journal as they were
            text = str(value)
            errors = "surrogateescape" if only_escaped_bytes(text) else "replace"
            data = text.encode("utf-8", errors)
        name = key.upper().encode("ascii")
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


class JournalWriter:
    """Writes entries to the systemd journal: through python-systemd when importable, else over
    the native socket. Raises JournalUnavailable when neither is there."""

    def __init__(self, socket_path: str = JOURNAL_SOCKET, identifier: str = "fluxtui") -> None:
        self.identifier = identifier
        self._send: Any = None
        self._sock: socket.socket | None = None
        self._socket_path = socket_path
        if socket_path == JOURNAL_SOCKET:
            try:
                from systemd import journal  # type: ignore[import-not-found]
            except ImportError:
                pass
            else:
                if os.path.exists(JOURNAL_SOCKET):
                    self._send = journal.send
                    self.via = "python-systemd"
                    return
        if not os.path.exists(socket_path):
            raise JournalUnavailable(
                f"no systemd journal running ({socket_path} does not exist)")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.via = socket_path

    def send(self, message: str, priority: int, **fields: Any) -> None:
        if self._send is not None:
            self._send(message, PRIORITY=priority, SYSLOG_IDENTIFIER=self.identifier,
                       **{k.upper(): v for k, v in fields.items() if v is not None})
            return
        assert self._sock is not None
        payload = encode_journal_fields({"MESSAGE": message, "PRIORITY": priority,
                                         "SYSLOG_IDENTIFIER": self.identifier, **fields})
        try:
            self._sock.sendto(payload, self._socket_path)
        except BlockingIOError:
            raise JournalUnavailable("journal socket is full; entry dropped") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
