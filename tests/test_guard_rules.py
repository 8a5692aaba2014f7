"""The policy (which verdict for which process) and the rules file (atomic, refused when unsafe)."""

from __future__ import annotations

import math
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from fluxtui.config import AllowedProgram, CredentialGroup, GuardConfig
from fluxtui.events import ProcessKey
from fluxtui.guard.access_rules import (
    FIVE_MINUTES,
    RuleBook,
    RulesFile,
    RulesFileError,
    SavedRule,
    TempRule,
    evaluate,
)
from fluxtui.guard.catalogue import build_catalogue
from fluxtui.guard.identity import ExeKey, ExeVerification, ProcessInfo
from tests.kernel import require_root

SHA = "ab" * 32
NOW = 1000.0  # the responder's monotonic clock, injected: never the uptime
KEY = ExeKey(1, 2, 3, 4, 5)


def _group(**program: str):
    config = replace(GuardConfig(), homes=["/nonexistent"], system_files=[], groups=[
        CredentialGroup("ssh-keys", "T1552.004", [".ssh/id_*"],
                        [AllowedProgram("/usr/bin/ssh-keygen", **program)])])
    group = build_catalogue(config).group("ssh-keys")
    assert group is not None
    return group


def _proc(exe: str = "/usr/bin/ssh-keygen", uid: int = 1000, pid: int = 42,
          args: tuple[str, ...] = ("-y",)) -> ProcessInfo:
    return ProcessInfo(key=ProcessKey(pid, 777), exe=exe, exe_key=KEY, comm="x", uid=uid,
                       euid=uid, user="u", ppid=1, parent_exe="/sbin/init",
                       cmdline=(exe, *args), env_flags=())


def _verification(path: str = "/usr/bin/ssh-keygen", verified: bool = True,
                  sha: str = SHA) -> ExeVerification:
    return ExeVerification(path=path, key=KEY, sha256=sha,
                           package="openssh-client" if verified else None,
                           manager="dpkg" if verified else None,
                           package_match=True if verified else None, system_dir=verified,
                           problems=() if verified else ("no package owns it",))


def _book(tmp_path: Path) -> RuleBook:
    book = RuleBook(RulesFile(tmp_path / "rules.yml"))
    book.load()
    return book


def _rule(action: str = "allow", path: str = "/usr/bin/ssh-keygen", sha: str = SHA,
          group: str = "ssh-keys") -> SavedRule:
    return SavedRule(SavedRule.make_id(path, sha, group), action, group, path, sha,  # type: ignore[arg-type]
                     "2025-01-01T00:00:00+00:00", "key A: allow always")


def test_catalogue_program_allows_only_when_verified(tmp_path: Path) -> None:
    book = _book(tmp_path)
    group = _group()
    verdict = evaluate(group, _proc(), _verification(), (), book, now=NOW)
    assert verdict.allow is True and verdict.decided_by == "catalogue"
    unverified = evaluate(group, _proc(), _verification(verified=False), (), book, now=NOW)
    assert unverified.allow is None and "no package owns it" in unverified.reason
    other = evaluate(group, _proc("/usr/bin/cat"), _verification("/usr/bin/cat"), (), book,
                     now=NOW)
    assert other.allow is None and other.decided_by == "no-rule"


def test_flags_block_every_allow_but_not_a_deny(tmp_path: Path) -> None:
    book = _book(tmp_path)
    group = _group()
    flagged = evaluate(group, _proc(), _verification(), ("LD_PRELOAD set",), book, now=NOW)
    assert flagged.allow is None and "LD_PRELOAD set" in flagged.reason
    book.add_saved(_rule("allow"))
    traced = ("traced by pid 9",)
    assert evaluate(group, _proc(), _verification(), traced, book, now=NOW).allow is None
    book.add_saved(_rule("deny"))
    assert evaluate(group, _proc(), _verification(), traced, book, now=NOW).allow is False


def test_always_rules_are_scoped_to_path_hash_and_group(tmp_path: Path) -> None:
    book = _book(tmp_path)
    group = _group()
    book.add_saved(_rule("allow", "/opt/tool", SHA))
    tool = _proc("/opt/tool")
    assert evaluate(group, tool, _verification("/opt/tool", False), (), book, now=NOW).allow is True
    other_hash = _verification("/opt/tool", False, sha="cd" * 32)
    # upgraded: ask again
    assert evaluate(group, tool, other_hash, (), book, now=NOW).allow is None
    aws = replace(group, name="aws")
    assert evaluate(aws, tool, _verification("/opt/tool", False), (), book, now=NOW).allow is None


def test_deny_rule_beats_the_catalogue(tmp_path: Path) -> None:
    book = _book(tmp_path)
    book.add_saved(_rule("deny"))
    verdict = evaluate(_group(), _proc(), _verification(), (), book, now=NOW)
    assert verdict.allow is False and verdict.decided_by == "rule"


def test_temporary_rules(tmp_path: Path) -> None:
    book = _book(tmp_path)
    group = _group()
    proc = _proc("/opt/tool")
    ver = _verification("/opt/tool", False)
    book.add_temp(TempRule("5min", "ssh-keys", "/opt/tool", SHA, None, 1000.0 + FIVE_MINUTES))
    assert evaluate(group, proc, ver, (), book, now=1000.0).allow is True
    assert evaluate(group, proc, ver, (), book, now=1000.0 + FIVE_MINUTES + 1).allow is None
    book.add_temp(TempRule("process", "ssh-keys", "/opt/tool", SHA, proc.key, math.inf))
    later = 1000.0 + FIVE_MINUTES + 1  # the 5 minutes are over; the process rule remains
    assert evaluate(group, proc, ver, (), book, now=later).allow is True
    reused_pid = replace(proc, key=ProcessKey(proc.key.pid, proc.key.start_ticks + 1))
    # PID reuse inherits nothing
    assert evaluate(group, reused_pid, ver, (), book, now=later).allow is None
    # the same process after an exec of another program inherits nothing either
    exec_cat = replace(proc, exe="/usr/bin/cat")
    cat = _verification("/usr/bin/cat", True, sha="ef" * 32)
    assert evaluate(group, exec_cat, cat, (), book, now=later).allow is None
    book.expire(1000.0 + FIVE_MINUTES + 1, alive=set())  # 5 min over, process gone
    assert book.temporary() == []


@pytest.mark.parametrize(("uids", "parent", "args", "allowed"), [
    ("1000-1999", "", "", True), ("0", "", "", False), ("", "/sbin/*", "", True),
    ("", "/usr/bin/bash", "", False), ("", "", "-y*", True), ("", "", "-l*", False)])
def test_program_narrowing(tmp_path: Path, uids: str, parent: str, args: str,
                           allowed: bool) -> None:
    group = _group(uids=uids, parent=parent, args=args)
    verdict = evaluate(group, _proc(), _verification(), (), _book(tmp_path), now=NOW)
    assert (verdict.allow is True) == allowed


def test_rules_file_round_trip_is_atomic_and_private(tmp_path: Path) -> None:
    book = _book(tmp_path)
    book.add_saved(_rule("allow"))
    book.add_saved(_rule("deny", "/opt/other"))
    assert book.persist()
    path = tmp_path / "rules.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["rules.yml"]  # no temporary left over
    again = _book(tmp_path)
    assert again.error is None and again.saved() == book.saved()
    assert again.delete(book.saved()[0].id) and again.persist()
    assert len(_book(tmp_path).saved()) == 1


@pytest.mark.parametrize(("content", "message"), [
    ("version: 1\nrules: [\n", "not valid YAML at line"),
    ("- just a list\n", "expected a mapping with 'version' and 'rules'"),
    ("version: 2\nrules: []\n", "unsupported version 2"),
    ("version: 1\nrules:\n  - {id: a, action: maybe, group: g, executable: /x, sha256: "
     + SHA + ", created: c, decided_by: d}\n", "rule 1: action must be allow or deny"),
    ("version: 1\nrules:\n  - {id: a, action: allow}\n", "rule 1: expected exactly the keys"),
])
def test_corrupt_rules_file_is_refused_and_left_untouched(tmp_path: Path, content: str,
                                                          message: str) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(content)
    os.chmod(path, 0o600)
    book = _book(tmp_path)
    assert book.error is not None and message in book.error and "left untouched" in book.error
    assert book.saved() == []
    book.add_saved(_rule())  # an "always" answer still works for this session...
    assert not book.persist()  # ...but never overwrites the refused file
    assert path.read_text() == content


def test_rules_file_writable_by_others_is_refused(tmp_path: Path) -> None:
    require_root()
    good = _book(tmp_path)
    good.add_saved(_rule())
    assert good.persist()
    path = tmp_path / "rules.yml"
    os.chmod(path, 0o666)
    before = path.read_bytes()
    book = _book(tmp_path)
    assert book.error is not None and "writable by users other than its owner" in book.error
    assert book.saved() == [] and not book.persist() and path.read_bytes() == before


def test_rules_file_in_a_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    require_root()
    directory = tmp_path / "shared"
    directory.mkdir()
    good = RuleBook(RulesFile(directory / "rules.yml"))
    good.add_saved(_rule())
    assert good.persist()
    os.chmod(directory, 0o777)
    book = RuleBook(RulesFile(directory / "rules.yml"))
    book.load()
    assert book.error is not None and "its directory" in book.error


def test_missing_rules_file_is_an_empty_set(tmp_path: Path) -> None:
    book = _book(tmp_path)
    assert book.error is None and book.saved() == []
    with pytest.raises(RulesFileError):
        RulesFile(tmp_path).load()  # a directory cannot be read as the file
