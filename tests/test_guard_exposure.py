"""The guard says when other processes of a reader's user can reach what an allowed reader
opened (pidfd_getfd of its fd, its memory): the second adversarial pass took a key this way
from an allowed `ssh-keygen -y` (a race won within tens of tries on a kernel without Yama)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxtui.guard.exposure import ptrace_exposure


@pytest.mark.parametrize(("content", "said"), [
    ("0\n", "Yama ptrace_scope is 0"),
    ("1\n", "Yama ptrace_scope is 1"),
    (None, "this kernel has no Yama"),
    ("x\n", "Yama ptrace_scope unreadable"),
])
def test_a_kernel_that_lets_the_user_reach_an_allowed_reader_is_reported(
        tmp_path: Path, content: str | None, said: str) -> None:
    path = tmp_path / "ptrace_scope"
    if content is not None:
        path.write_text(content)
    note = ptrace_exposure(str(path))
    assert note.startswith(said) and "pidfd_getfd" in note and "ptrace_scope=2" in note


@pytest.mark.parametrize("scope", ["2\n", "3\n"])
def test_yama_admin_only_attach_is_not_a_problem(tmp_path: Path, scope: str) -> None:
    path = tmp_path / "ptrace_scope"
    path.write_text(scope)
    assert ptrace_exposure(str(path)) == ""
