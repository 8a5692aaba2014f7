"""Hole 1 of issue 9: protection follows the key itself, not its name (real kernel, temporary
homes only). On the old code each read below succeeded once the guard had re-planned: the
re-plan rebuilt the protected inodes from the names, and the renamed key was no longer one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fluxtui.capabilities.guard import GuardComponent
from fluxtui.guard.events import GuardDecision
from tests.guard_support import (
    Home,
    guard_config,
    make_home,
    require_guard_kernel,
    run,
    running_guard,
    wait_for,
)

pytestmark = pytest.mark.kernel
EPERM = b"Operation not permitted"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    require_guard_kernel()
    return make_home(tmp_path)


def _replanned_without(guard: GuardComponent, path: Path) -> None:
    """Wait (bounded) until the guard's plan no longer lists `path`: the moment the old code
    stopped protecting it."""
    wait_for(lambda: guard.marks is not None and str(path) not in guard.marks.plan.files)


def _denied(path: Path) -> None:
    cat = run(["cat", str(path)], timeout=10)
    assert cat.returncode == 1 and cat.stdout == b"" and EPERM in cat.stderr, cat


def _decision_for(guard: GuardComponent, events: list[object], path: Path) -> GuardDecision:
    def found() -> GuardDecision | None:
        guard.flush()
        return next((e for e in reversed(events)
                     if isinstance(e, GuardDecision) and e.file == str(path)), None)

    return wait_for(found)


@pytest.mark.parametrize("target", [".ssh/stolen.pub", ".ssh/config-backup", "k"])
def test_a_renamed_key_stays_protected_wherever_it_goes(home: Home, tmp_path: Path,
                                                       target: str) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        moved = home.root / target
        home.key.rename(moved)
        _replanned_without(guard, home.key)
        _denied(moved)
        decision = _decision_for(guard, events, moved)
    assert not decision.allowed and decision.group == "ssh-keys"
    assert decision.credential == str(home.key)  # the credential it is, by the name it had


def test_a_moved_credential_directory_keeps_its_keys_protected(home: Home,
                                                               tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        moved = home.root / ".ssh-moved"
        home.ssh.rename(moved)
        _replanned_without(guard, home.key)
        _denied(moved / "id_ed25519")


@pytest.mark.parametrize("linked_before_start", [True, False])
def test_a_replaced_key_stays_protected_through_its_other_links(home: Home, tmp_path: Path,
                                                                linked_before_start: bool
                                                                ) -> None:
    link = home.root / "old-key-link"
    if linked_before_start:
        os.link(home.key, link)
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        if not linked_before_start:
            os.link(home.key, link)
        new = home.ssh / "new-key"
        new.write_text("a new key\n")
        new.rename(home.key)  # replace by rename: the old key now lives only as `link`
        wait_for(lambda: guard.marks is not None and guard.marks.inodes.get(
            (home.key.stat().st_dev, home.key.stat().st_ino)) is not None)
        _denied(link)
        _denied(home.key)
        decision = _decision_for(guard, events, link)
    assert decision.group == "ssh-keys" and not decision.allowed


def test_protection_survives_a_restart_and_a_rename_while_stopped(home: Home,
                                                                  tmp_path: Path) -> None:
    config = guard_config(home, tmp_path / "state")
    with running_guard(config):
        pass
    state = json.loads(Path(config.state_file).read_text())
    assert any(e["path"] == str(home.key) for e in state["inodes"])
    assert oct(Path(config.state_file).stat().st_mode & 0o777) == "0o600"
    hidden = home.root / "k"
    home.key.rename(hidden)  # while fluxtui is stopped: no plan will ever name it again
    with running_guard(config) as (guard, events):
        _denied(hidden)
        decision = _decision_for(guard, events, hidden)
    assert decision.credential == str(home.key)


def test_an_allowed_reader_still_reads_the_key_under_its_new_name(home: Home,
                                                                 tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        moved = home.root / "k"
        home.key.rename(moved)
        _replanned_without(guard, home.key)
        keygen = run(["/usr/bin/ssh-keygen", "-y", "-f", str(moved)])
        assert keygen.returncode == 0, keygen.stderr
        assert home.pub.read_bytes().split(b" ")[1] in keygen.stdout


def test_the_last_link_gone_ends_the_protection(home: Home, tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        key = (home.key.stat().st_dev, home.key.stat().st_ino)
        assert guard.marks is not None and key in guard.marks.inodes
        home.key.unlink()
        marks = guard.marks
        wait_for(lambda: key not in marks.inodes, timeout=30)
