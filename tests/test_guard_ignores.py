"""Point 4 of issue 9: the other files of a protected directory cost nothing. Non-credential
children of marked directories get kernel-side ignore marks, so their opens never reach fluxtui;
never on an inode that is or was a credential; a file renamed or linked onto a credential name
loses its ignore mark as soon as fluxtui sees the rename (that window is measured here).
On the old code every open of ~/.bashrc was an event answered by the responder (`passed`)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest

from fluxtui.collectors.fanotify import FAN_OPEN_PERM
from fluxtui.guard.responder import Responder
from tests.guard_support import (
    Home,
    guard_config,
    kernel_marks,
    make_home,
    measure_window,
    require_guard_kernel,
    run,
    running_guard,
    wait_for,
)

pytestmark = pytest.mark.kernel
EPERM = b"Operation not permitted"
TRIALS = 15


@pytest.fixture
def home(tmp_path: Path) -> Home:
    require_guard_kernel()
    return make_home(tmp_path)


def _responder(guard: object) -> Responder:
    responder = guard.responder  # type: ignore[attr-defined]
    assert responder is not None
    return responder


def test_opens_of_non_credential_files_never_reach_fluxtui(home: Home, tmp_path: Path) -> None:
    bashrc = home.root / ".bashrc"
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        responder = _responder(guard)
        assert guard._fan is not None
        ignored = kernel_marks(guard._fan.fd)[bashrc.stat().st_ino][1]
        assert ignored & FAN_OPEN_PERM  # an ignore mark in the kernel
        for _ in range(5):
            assert run(["cat", str(bashrc)]).returncode == 0
        late = home.root / ".profile"
        late.write_text("# created after the start\n")
        wait_for(lambda: late.stat().st_ino in kernel_marks(guard._fan.fd))  # type: ignore
        for _ in range(5):
            assert run(["cat", str(late)]).returncode == 0
        assert responder.passed == 0
        assert run(["cat", str(home.key)]).returncode == 1  # the key still asks


def test_no_ignore_mark_on_an_inode_that_is_or_was_a_credential(home: Home,
                                                                tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        assert guard._fan is not None
        fan_fd = guard._fan.fd
        key_ino = home.key.stat().st_ino
        assert kernel_marks(fan_fd)[key_ino] == (FAN_OPEN_PERM, 0)
        notes = home.ssh / "notes"
        os.link(home.key, notes)  # the key under a name that is no credential
        run(["cat", str(notes)])
        moved = home.root / "plain"
        home.key.rename(moved)
        wait_for(lambda: guard.marks is not None
                 and str(home.key) not in guard.marks.plan.files)
        assert kernel_marks(fan_fd)[key_ino] == (FAN_OPEN_PERM, 0)
        cat = run(["cat", str(notes)])
        assert cat.returncode == 1 and EPERM in cat.stderr


def test_only_the_homes_own_children_are_ignored(home: Home, tmp_path: Path) -> None:
    temp = home.root / ".netrc.tmp"  # how a tool writes ~/.netrc before renaming it
    temp.write_text("machine example.org password soon-a-secret\n")
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        assert guard._fan is not None
        marks = kernel_marks(guard._fan.fd)
        assert marks[(home.root / ".bashrc").stat().st_ino][1] & FAN_OPEN_PERM
        assert (home.ssh / "known_hosts").stat().st_ino not in marks  # in a credential dir
        assert temp.stat().st_ino not in marks
        run(["cat", str(temp)])
        run(["cat", str(home.ssh / "known_hosts")])
        assert temp.stat().st_ino not in kernel_marks(guard._fan.fd)
        assert _responder(guard).passed == 2  # those opens are still seen


@pytest.mark.parametrize("how", ["rename", "link"])
def test_a_file_renamed_or_linked_onto_a_credential_name_loses_its_ignore_mark(
        home: Home, tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    windows: list[float] = []
    used: list[float] = []
    opens: list[int] = []
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        assert guard._fan is not None
        fan_fd = guard._fan.fd
        for trial in range(TRIALS):
            src = home.root / f"notes-{trial}"
            src.write_text("becomes a credential by its new name\n")
            wait_for(lambda s=src: kernel_marks(fan_fd).get(s.stat().st_ino, (0, 0))[1])
            dst = home.root / ".netrc"
            seen = measure_window(how, src, dst)
            assert seen["refused"], seen  # protected in the end, every time
            assert kernel_marks(fan_fd)[dst.stat().st_ino] == (FAN_OPEN_PERM, 0)
            windows.append(seen["window_us"])
            used.append(seen["open_until_us"])
            opens.append(seen["opens"])
            dst.unlink()
            if how == "link":
                src.unlink()
    with capsys.disabled():
        print(f"\n[window] {how} onto a credential name, {TRIALS} trials: opens that went "
              f"through: median {statistics.median(opens)}, max {max(opens)}; microseconds "
              f"from the {how} to the end of the last open that went through: median "
              f"{statistics.median(used):.0f}, max {max(used):.0f}; to the first refused "
              f"open: median {statistics.median(windows):.0f}, max {max(windows):.0f}")


def test_a_home_full_of_files_cannot_use_up_the_marks_that_protect_keys(
        home: Home, tmp_path: Path) -> None:
    """An infostealer fills the home with files so that their ignore marks exhaust the kernel's
    marks: the ignore marks have a budget, and a key created afterwards is still protected by
    inode (it stays protected when renamed away)."""
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        marks = guard.marks
        assert marks is not None and marks.ignores.budget > 0
        marks.ignores.budget = 3
        for n in range(10):
            (home.root / f"filler-{n}").write_text("x\n")
        wait_for(lambda: marks.ignores.full)
        assert len(marks.ignores.ignored) <= 3
        new_key = home.ssh / "id_new"
        new_key.write_text("a key made after the filler\n")
        wait_for(lambda: (new_key.stat().st_dev, new_key.stat().st_ino) in marks.inodes)
        moved = home.root / "stolen"
        new_key.rename(moved)
        cat = run(["cat", str(moved)])
        assert cat.returncode == 1 and EPERM in cat.stderr
