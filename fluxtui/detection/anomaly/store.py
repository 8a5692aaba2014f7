"""The feature store: recorded windows of this machine's real behaviour, in one SQLite file.

Root-owned, mode 0600 (it describes what every process on the machine does), schema-versioned
(`meta.schema` is the feature schema it was written with: a store of another schema is refused,
never mixed). Windows are kept sparse (calls by syscall number, bigrams, findings) so that the
dense layout is derived, not stored. `max_windows` bounds it: the oldest go first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from fluxtui.detection.anomaly.features import FEATURE_SCHEMA, FeatureWindow
from fluxtui.events import ProcessKey


class StoreError(Exception):
    """A store that cannot be used, phrased for the user."""


_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY,
    recorded_at REAL NOT NULL,
    pid INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL,
    exe TEXT NOT NULL,
    window_s REAL NOT NULL,
    counts TEXT NOT NULL,
    bigrams TEXT NOT NULL,
    events TEXT NOT NULL
);
"""


def _check_safe(path: Path) -> None:
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path}: refused, not a regular file")
    if os.geteuid() == 0 and st.st_uid != 0:
        raise StoreError(f"{path}: refused, owned by uid {st.st_uid}, not root "
                         f"(fix with: chown root {path})")
    if st.st_mode & 0o077:
        raise StoreError(f"{path}: refused, readable or writable by other users (mode "
                         f"{stat.filemode(st.st_mode)}; fix with: chmod 600 {path})")


class FeatureStore:
    def __init__(self, path: Path, *, create: bool = True, replace: bool = False,
                 max_windows: int = 200_000) -> None:
        """Open (or create, mode 0600) the store. `replace` starts it afresh (fluxtui train
        without --append). Raises StoreError with one clear line."""
        self.path = Path(path)
        self.max_windows = max_windows
        if replace:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path}: no feature store (record one with: fluxtui "
                                 "train)")
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600))
        _check_safe(self.path)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.executescript(_TABLES)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a feature store ({exc})") from None
        if row is None:
            with self._db:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (FEATURE_SCHEMA,))
        elif row[0] != FEATURE_SCHEMA:
            self._db.close()
            raise StoreError(f"{self.path}: refused, recorded with feature schema {row[0]!r}; "
                             f"this fluxtui uses {FEATURE_SCHEMA!r} (record afresh: fluxtui "
                             "train without --append)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, windows: Iterable[FeatureWindow]) -> int:
        rows = [(w.recorded_at, w.key.pid, w.key.start_ticks, w.exe, w.window_s,
                 json.dumps(sorted(w.counts.items()), separators=(",", ":")),
                 json.dumps([[a, b, n] for (a, b), n in sorted(w.bigrams.items())],
                            separators=(",", ":")),
                 json.dumps(dict(sorted(w.events.items())), separators=(",", ":")))
                for w in windows]
        if not rows:
            return 0
        with self._db:
            self._db.executemany(
                "INSERT INTO windows (recorded_at, pid, start_ticks, exe, window_s, counts, "
                "bigrams, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            last = self._db.execute("SELECT max(id) FROM windows").fetchone()[0]
            self._db.execute("DELETE FROM windows WHERE id <= ?", (last - self.max_windows,))
        return len(rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM windows").fetchone()[0])

    def windows(self) -> Iterator[FeatureWindow]:
        for (recorded_at, pid, start_ticks, exe, window_s, counts, bigrams,
             events) in self._db.execute(
                "SELECT recorded_at, pid, start_ticks, exe, window_s, counts, bigrams, events "
                "FROM windows ORDER BY recorded_at, id"):
            yield FeatureWindow(
                ProcessKey(pid, start_ticks), exe, window_s,
                {int(nr): int(n) for nr, n in json.loads(counts)},
                {(int(a), int(b)): int(n) for a, b, n in json.loads(bigrams)},
                {str(r): int(n) for r, n in json.loads(events).items()}, recorded_at)
