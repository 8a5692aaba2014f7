"""The audit trail (SQLite, WAL) and the journald native protocol."""

from __future__ import annotations

import socket
import stat
import struct
import threading
from pathlib import Path

import pytest

from fluxtui.audit_trail import AuditRecord, AuditStore, AuditStoreError
from fluxtui.journal import JournalUnavailable, JournalWriter, encode_journal_fields


def _record(i: int, **kw: object) -> AuditRecord:
    base: dict[str, object] = {"ts": 1000.0 + i, "kind": "file-access", "outcome": "denied",
                               "pid": 100 + i, "start_ticks": 5, "user": "alice",
                               "executable": "/usr/bin/cat", "target": f"/h/.ssh/id_{i}",
                               "category": "ssh-keys", "decided_by": "keypress",
                               "reason": "key d", "latency_us": 12.5,
                               "detail": {"flags": ["LD_PRELOAD set"]}}
    base.update(kw)
    return AuditRecord(**base)  # type: ignore[arg-type]


def test_records_are_kept_newest_first_in_wal_mode(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "state" / "audit.db")
    try:
        assert store.journal_mode() == "wal"
        assert store.record([_record(i) for i in range(3)]) == 3
        store.record_decision(_record(3, outcome="allowed", count=7, last_ts=1010.0))
        rows = store.recent(10)
        assert [r["target"] for r in rows] == [f"/h/.ssh/id_{i}" for i in (3, 2, 1, 0)]
        assert rows[0]["count"] == 7 and rows[0]["last_ts"] == 1010.0
        assert rows[1]["detail"] == {"flags": ["LD_PRELOAD set"]}
        assert store.recent(2, kind="other") == []
        assert stat.S_IMODE((tmp_path / "state" / "audit.db").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    finally:
        store.close()


def test_writer_and_reader_threads(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.db")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(50):
                store.record([_record(i)])
        except BaseException as exc:
            errors.append(exc)

    try:
        thread = threading.Thread(target=write)
        thread.start()
        for _ in range(50):
            store.recent(5)
        thread.join(timeout=30)
        assert not errors and len(store.recent(100)) == 50
    finally:
        store.close()


def test_unusable_database_gives_one_message(tmp_path: Path) -> None:
    bad = tmp_path / "audit.db"
    bad.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(AuditStoreError, match=r"audit database .*audit\.db"):
        AuditStore(bad)


def _parse(payload: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    i = 0
    while i < len(payload):
        end = payload.index(b"\n", i)
        line = payload[i:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value
            i = end + 1
        else:
            size = struct.unpack("<Q", payload[end + 1:end + 9])[0]
            fields[line.decode()] = payload[end + 9:end + 9 + size]
            i = end + 9 + size + 1
    return fields


def test_journal_native_protocol(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    writer = JournalWriter(socket_path=path)
    try:
        writer.send("denied cat\nsecond line", priority=4, fluxtui_file="/h/.ssh/id_rsa",
                    object_pid=1234, skipped=None)
        fields = _parse(server.recv(65536))
    finally:
        writer.close()
        server.close()
    assert fields["MESSAGE"] == b"denied cat\nsecond line"
    assert fields["PRIORITY"] == b"4" and fields["SYSLOG_IDENTIFIER"] == b"fluxtui"
    assert fields["FLUXTUI_FILE"] == b"/h/.ssh/id_rsa" and fields["OBJECT_PID"] == b"1234"
    assert "SKIPPED" not in fields


def test_no_journal_is_reported_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(JournalUnavailable, match="no systemd journal running"):
        JournalWriter(socket_path=str(tmp_path / "missing.sock"))


def test_encoding_of_plain_fields() -> None:
    assert encode_journal_fields({"a": "x", "b": 2}) == b"A=x\nB=2\n"


def test_only_the_newest_rows_are_kept(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.db", max_rows=3)
    try:
        store.record([_record(i) for i in range(4)])
        store.record_decision(_record(4))
        assert [r["pid"] for r in store.recent(10)] == [104, 103, 102]
    finally:
        store.close()


def test_names_with_undecodable_bytes_are_stored_and_keep_the_batch(tmp_path: Path) -> None:
    """A credential or executable named with bytes that are not UTF-8 (kept by
    surrogateescape) once failed the whole batch with UnicodeEncodeError: every record in it
    was lost. Now each is stored, the bytes written as \\xNN, as they are shown."""
    bad = "/h/.ssh/id_" + b"\xff\xfe".decode("utf-8", "surrogateescape") + "\x1b[31m"
    exe = "/tmp/" + b"\x80cat".decode("utf-8", "surrogateescape")
    store = AuditStore(tmp_path / "audit.db")
    try:
        assert store.record([_record(0), _record(1, target=bad, executable=exe,
                                                 reason="read " + bad), _record(2)]) == 3
        rows = store.recent(10)
    finally:
        store.close()
    assert [r["pid"] for r in rows] == [102, 101, 100]
    assert rows[1]["target"] == "/h/.ssh/id_\\xff\\xfe\x1b[31m"
    assert rows[1]["executable"] == "/tmp/\\x80cat"
    assert rows[1]["reason"] == "read /h/.ssh/id_\\xff\\xfe\x1b[31m"


def test_journal_fields_keep_undecodable_bytes() -> None:
    name = "/h/.ssh/id_" + b"\xff".decode("utf-8", "surrogateescape")
    assert encode_journal_fields({"f": name}) == b"F=/h/.ssh/id_\xff\n"
