"""The audit trail: an SQLite database (WAL) of what fluxtui decided or did.

`AuditStore` is generic: each record has a kind ("file-access", ...), an outcome, the process,
a target (a file, a socket), who or what decided, a latency and a JSON `detail` for the rest.
Records that repeat within one write batch may be folded into one row with a `count`.
Nothing here imports textual.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxtui.untrusted_text import only_escaped_bytes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,            -- seconds since the epoch, first occurrence
    last_ts REAL NOT NULL,       -- last occurrence folded into this row
    count INTEGER NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,       -- allowed, denied, ...
    pid INTEGER,
    start_ticks INTEGER,
    user TEXT,
    executable TEXT,
    target TEXT,
    category TEXT,               -- e.g. the credential group
    decided_by TEXT,             -- rule, keypress, timeout, ...
    reason TEXT,
    latency_us REAL,             -- the longest of the folded occurrences
    detail TEXT NOT NULL         -- JSON object
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
"""

_COLUMNS = ("ts", "last_ts", "count", "kind", "outcome", "pid", "start_ticks", "user",
            "executable", "target", "category", "decided_by", "reason", "latency_us", "detail")


@dataclass(frozen=True)
class AuditRecord:
    ts: float
    kind: str
    outcome: str
    pid: int | None = None
    start_ticks: int | None = None
    user: str = ""
    executable: str = ""
    target: str = ""
    category: str = ""
    decided_by: str = ""
    reason: str = ""
    latency_us: float | None = None
    count: int = 1
    last_ts: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def row(self) -> tuple[Any, ...]:
        return (self.ts, self.last_ts if self.last_ts is not None else self.ts, self.count,
                self.kind, self.outcome, self.pid, self.start_ticks, storable(self.user),
                storable(self.executable), storable(self.target), self.category,
                self.decided_by, storable(self.reason), self.latency_us,
                json.dumps(dict(self.detail), default=str))


def storable(value: str) -> str:
    """`value` as SQLite can store it: a byte that was not UTF-8 (a lone surrogate from
    surrogateescape, as in a file or executable name) becomes `\\xNN`, as it is shown, instead
    of failing the whole batch (a credential named with such bytes once made every record of
    its batch disappear)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape" if only_escaped_bytes(value) else
                            "backslashreplace").decode("utf-8", "backslashreplace")
    return value


class AuditStoreError(Exception):
    """The database cannot be opened or written; the message says why."""


MAX_AUDIT_ROWS = 1_000_000  # retention: older rows are deleted as new ones come in


class AuditStore:
    """One SQLite file in WAL mode, root-only (0600 in a 0700 directory when created here).
    Each thread gets its own connection; writes are one transaction per batch. Keeps the newest
    `max_rows` rows (retention), so the file cannot grow without bound."""

    def __init__(self, path: str | Path, max_rows: int = MAX_AUDIT_ROWS) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
            conn = self._connection()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise AuditStoreError(f"audit database {self.path}: {exc}") from None

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def record(self, records: Iterable[AuditRecord]) -> int:
        rows = [r.row() for r in records]
        if not rows:
            return 0
        conn = self._connection()
        try:
            with conn:
                conn.executemany(
                    f"INSERT INTO audit ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _COLUMNS)})", rows)
                conn.execute("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?",
                             (self.max_rows,))
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit database {self.path}: {exc}") from None
        return len(rows)

    def record_decision(self, record: AuditRecord) -> None:
        self.record([record])

    def recent(self, limit: int = 200, kind: str | None = None) -> list[dict[str, Any]]:
        """The newest records first, as dicts (detail decoded)."""
        query = "SELECT * FROM audit"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        query += " ORDER BY id DESC LIMIT ?"
        try:
            rows = self._connection().execute(query, (*args, limit)).fetchall()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit database {self.path}: {exc}") from None
        out = []
        for row in rows:
            item = dict(row)
            item["detail"] = json.loads(item["detail"] or "{}")
            out.append(item)
        return out

    # --- requests waiting for an answer (the guard) ----------------------------------------------

    PENDING = "file-access-pending"

    def resolve_pending(self, session: str, request_ids: Iterable[int]) -> None:
        """Forget the pending rows of requests that got their answer."""
        ids = list(request_ids)
        if not ids:
            return
        conn = self._connection()
        try:
            with conn:
                conn.executemany(
                    "DELETE FROM audit WHERE kind = ? AND json_extract(detail, '$.session') = ? "
                    "AND json_extract(detail, '$.request') = ?",
                    [(self.PENDING, session, i) for i in ids])
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit database {self.path}: {exc}") from None

    def release_pending(self, reason: str) -> int:
        """At start: the requests still pending were released by the kernel when the previous
        fluxtui stopped without answering them (killed): record them as such. Returns how
        many."""
        conn = self._connection()
        try:
            with conn:
                cur = conn.execute(
                    "UPDATE audit SET kind = 'file-access', outcome = 'released', "
                    "decided_by = 'fluxtui-stopped', reason = ? WHERE kind = ?",
                    (reason, self.PENDING))
                return cur.rowcount
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit database {self.path}: {exc}") from None

    def journal_mode(self) -> str:
        return str(self._connection().execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
