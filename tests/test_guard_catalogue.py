"""The credential catalogue and the mark plan (file system only, no fanotify)."""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import replace
from pathlib import Path

import pytest

from fluxtui.config import (
    AllowedProgram,
    Config,
    CredentialGroup,
    GuardConfig,
    load_config,
)
from fluxtui.guard.catalogue import (
    CatalogueError,
    IdRanges,
    build_catalogue,
    homes_from_passwd,
    read_login_defs,
    usable_homes,
)
from fluxtui.guard.marks import plan_marks

REPO = Path(__file__).resolve().parents[1]
INTERPRETER = re.compile(
    r"^(python[0-9.]*|pypy[0-9.]*|node(js)?|deno|bun|perl[0-9.]*|ruby[0-9.]*|php[0-9.]*|"
    r"lua[0-9.]*|tclsh[0-9.]*|wish|java|osascript|sh|bash|dash|zsh|ksh|mksh|fish|csh|tcsh|"
    r"busybox|env|awk|gawk|mawk)$")


def test_config_yml_documents_the_builtin_catalogue() -> None:
    assert load_config(REPO / "config.yml").guard == Config().guard


def test_default_catalogue_covers_the_issue() -> None:
    catalogue = build_catalogue(replace(GuardConfig(), homes=["/nonexistent-home"]))
    names = {g.name for g in catalogue.groups}
    assert {"ssh-keys", "aws", "gnupg", "kube", "docker", "gcloud", "azure", "git-credentials",
            "netrc", "pgpass", "mysql", "vault", "pypi", "password-store", "firefox",
            "chromium-family", "shadow", "ssh-host-keys"} <= names
    ssh = catalogue.group("ssh-keys")
    assert ssh is not None and ssh.technique == "T1552.004"
    # Only readers that use the key; scp, sftp, rsync and git reach it through ssh (issue 9).
    assert {p.path for p in ssh.programs} == {"/usr/bin/ssh", "/usr/bin/ssh-keygen"}
    assert catalogue.excluded("id_ed25519.pub")
    assert catalogue.excluded("authorized_keys") and catalogue.excluded("known_hosts")
    assert not catalogue.excluded("id_ed25519")


def test_no_interpreter_is_allowed_by_a_default_rule() -> None:
    config = GuardConfig()
    for group in [*config.groups, *config.system_files]:
        for program in group.allowed:
            name = os.path.basename(program.path)
            assert not INTERPRETER.match(name), f"{group.name} allows interpreter {name}"


def _layout(root: Path) -> None:
    for rel in (".ssh/id_rsa", ".ssh/id_rsa.pub", ".ssh/authorized_keys", ".ssh/known_hosts",
                ".ssh/config", ".aws/credentials", ".netrc", ".bashrc",
                ".mozilla/firefox/abc.default/logins.json",
                ".mozilla/firefox/abc.default/prefs.js",
                ".password-store/work/db/github.gpg", ".password-store/top.gpg",
                ".config/google-chrome/Default/Login Data"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def test_plan_marks_only_catalogue_files_and_their_directories(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _layout(home)
    catalogue = build_catalogue(replace(GuardConfig(), homes=[str(home)], system_files=[]))
    plan = plan_marks(catalogue)
    rel = {os.path.relpath(p, home) for p in plan.files}
    assert rel == {".ssh/id_rsa", ".aws/credentials", ".netrc",
                   ".mozilla/firefox/abc.default/logins.json",
                   ".password-store/work/db/github.gpg", ".password-store/top.gpg",
                   ".config/google-chrome/Default/Login Data"}
    marked = {os.path.relpath(d, home) for d in plan.marked_dirs}
    assert marked == {".", ".ssh", ".aws", ".mozilla/firefox/abc.default", ".password-store",
                      ".password-store/work", ".password-store/work/db",
                      ".config/google-chrome/Default"}
    # Directories on the way are watched (for credential directories created later), not
    # marked; nothing outside the home is touched.
    assert str(home / ".config") in plan.watch and str(home / ".mozilla") in plan.watch
    assert all(p.startswith(str(home)) for p in plan.watch | set(plan.files) | plan.marked_dirs)
    assert plan.match(str(home / ".ssh" / "id_new"), catalogue).name == "ssh-keys"
    assert plan.match(str(home / ".ssh" / "id_new.pub"), catalogue) is None
    assert plan.match(str(home / ".bashrc"), catalogue) is None


def test_system_files_are_absolute_and_unmarked_dirs_get_no_directory_mark(
        tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "ssh").mkdir(parents=True)
    (etc / "shadow").write_text("x")
    (etc / "ssh" / "ssh_host_ed25519_key").write_text("x")
    (etc / "ssh" / "ssh_host_ed25519_key.pub").write_text("x")
    config = replace(GuardConfig(), homes=[str(tmp_path / "nohome")], groups=[],
                     unmarked_dirs=[str(etc)], system_files=[
                         CredentialGroup("shadow", "T1003.008", [f"{etc}/shadow"]),
                         CredentialGroup("host", "T1552.004", [f"{etc}/ssh/ssh_host_*_key"])])
    plan = plan_marks(build_catalogue(config))
    assert set(plan.files) == {str(etc / "shadow"), str(etc / "ssh" / "ssh_host_ed25519_key")}
    assert plan.marked_dirs == {str(etc / "ssh")}  # etc itself: file marks + inotify only
    assert str(etc) in plan.watch


@pytest.mark.parametrize(("groups", "system", "message"), [
    ([CredentialGroup("", patterns=[".x"])], [], "guard.groups[0].name: every group needs"),
    ([CredentialGroup("a", patterns=["/abs/x"])], [],
     "guard.groups[0].patterns[0]: expected a pattern relative to the home"),
    ([], [CredentialGroup("a", patterns=["etc/x"])],
     "guard.system_files[0].patterns[0]: expected an absolute pattern"),
    ([CredentialGroup("a", patterns=["../x"])], [], "uses . or .."),
    ([CredentialGroup("a", patterns=[".x/**"])], [], "must end with a file name glob"),
    ([CredentialGroup("a", patterns=[".x"]), CredentialGroup("a", patterns=[".y"])], [],
     "guard.groups[1].name: group 'a' given twice"),
    ([CredentialGroup("a", patterns=[".x"], allowed=[AllowedProgram("ssh")])], [],
     "guard.groups[0].allowed[0].path: expected a full executable path"),
    ([CredentialGroup("a", patterns=[".x"], allowed=[AllowedProgram("/bin/x", uids="me")])],
     [], "guard.groups[0].allowed[0].uids: expected ids like"),
])
def test_bad_catalogue_entries_get_one_clear_message(
        groups: list[CredentialGroup], system: list[CredentialGroup], message: str) -> None:
    with pytest.raises(CatalogueError) as info:
        build_catalogue(replace(GuardConfig(), groups=groups, system_files=system,
                                homes=["/nonexistent"]))
    assert message in str(info.value)


def test_id_ranges() -> None:
    ranges = IdRanges.parse("0, 1000-1999", "k")
    assert 0 in ranges and 1500 in ranges and 999 not in ranges and 2000 not in ranges
    assert 12345 in IdRanges.parse("", "k")


def test_homes_come_from_the_password_database(tmp_path: Path) -> None:
    def user(name: str, uid: int) -> pwd.struct_passwd:
        return pwd.struct_passwd((name, "x", uid, uid, "", f"/home/{name}", "/bin/sh"))

    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t 2000\nUID_MAX 3000\nUID_MIN_BAD x\n")
    assert read_login_defs(str(defs)) == (2000, 3000)
    assert read_login_defs(str(tmp_path / "missing")) == (1000, 60000)
    entries = [user("root", 0), user("daemon", 1), user("low", 1999), user("alice", 2000),
               user("bob", 3000), user("high", 3001), user("nobody", 65534)]
    assert homes_from_passwd(entries, str(defs)) == ["/home/root", "/home/alice", "/home/bob"]
    assert pwd.getpwuid(0).pw_dir in homes_from_passwd()  # the real database


def test_usable_homes_never_include_the_root_directory(tmp_path: Path) -> None:
    assert usable_homes(["/", str(tmp_path), "relative", str(tmp_path / "missing")]) == (
        str(tmp_path),)
