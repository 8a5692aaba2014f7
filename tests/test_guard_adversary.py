"""An infostealer running as the owner of the key (uid 65534, a temporary home) against the
guard in enforce mode, headless: ways around it found by the second adversarial pass (guard2),
each read on the old code and refused now."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guard_support import (
    Home,
    as_user,
    guard_config,
    require_guard_kernel,
    running_guard,
    user_home,
)
from tests.kernel import require

pytestmark = pytest.mark.kernel
PYTHON = "/usr/bin/python3"  # one the unprivileged user can run

# ssh-keygen -p on a symlink to the key: the key is read (allowed: ssh-keygen, verified), then
# ssh-keygen asks for the new passphrase on its terminal; meanwhile the symlink is pointed at a
# file of the attacker's, and ssh-keygen writes the (unencrypted, empty passphrase) private key
# there. Prints what the attacker's file holds, or "no stolen file".
SWAP_PASSPHRASE = r"""
import os, pty, sys, time
key, out = sys.argv[1], sys.argv[2]
link = os.path.join(out, "k")
os.symlink(key, link)
pid, fd = pty.fork()
if pid == 0:
    os.execv("/usr/bin/ssh-keygen", ["ssh-keygen", "-p", "-f", link])
seen = b""
end = time.monotonic() + 20
def until(text):
    global seen
    while text not in seen and time.monotonic() < end:
        try:
            seen += os.read(fd, 1024)
        except OSError:
            return False
    return text in seen
if until(b"new passphrase"):
    os.unlink(link)
    os.symlink(os.path.join(out, "stolen"), link)
    os.write(fd, b"\n")
    if until(b"again"):
        os.write(fd, b"\n")
    until(b"\n\n")  # drained until ssh-keygen exits (EIO)
os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace") + "\n---\n")
stolen = os.path.join(out, "stolen")
print(open(stolen).read() if os.path.exists(stolen) else "no stolen file")
"""


@pytest.fixture
def home() -> Iterator[Home]:
    require_guard_kernel()
    require(Path(PYTHON).exists(), f"{PYTHON} missing")
    with user_home() as made:
        yield made


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory of the attacker's own (outside the protected home)."""
    path = Path(tempfile.mkdtemp(prefix="fluxtui-attacker-"))
    try:
        path.chmod(0o777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_ssh_keygen_p_through_a_swapped_symlink_does_not_write_the_key_elsewhere(
        home: Home, scratch: Path, tmp_path: Path) -> None:
    secret = home.key.read_bytes().splitlines()[1]
    with running_guard(guard_config(home, tmp_path / "state")):
        attack = as_user([PYTHON, "-c", SWAP_PASSPHRASE, str(home.key), str(scratch)],
                         timeout=60)
    assert attack.returncode == 0, attack.stderr
    assert secret not in attack.stdout
    assert b"no stolen file" in attack.stdout
    assert b"Operation not permitted" in attack.stdout  # ssh-keygen could not load the key


def test_the_guard_reports_that_allowed_readers_are_reachable(home: Home,
                                                               tmp_path: Path) -> None:
    from fluxtui.guard.exposure import ptrace_exposure
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        problems = guard.view().problems
    expected = ptrace_exposure()
    assert (expected in problems) if expected else not any("pidfd_getfd" in p
                                                           for p in problems)


def test_undecodable_names_do_not_wipe_the_audit_trail(home: Home, scratch: Path,
                                                       tmp_path: Path) -> None:
    """A key named with bytes that are not UTF-8, read by a program named the same way, with an
    ordinary read in the same batch: on the old code the recorder failed on the batch
    (UnicodeEncodeError) and none of its reads was stored or published."""
    import os
    import sqlite3

    from fluxtui.guard.events import GuardDecision

    bad = os.fsencode(home.ssh) + b"/id_\xff\xfe"
    with open(bad, "wb") as f:
        f.write(b"not-a-real-key\n")
    os.chown(bad, 65534, 65534)
    reader = os.fsencode(scratch) + b"/\x80cat"
    shutil.copy2("/usr/bin/cat", reader)
    state = tmp_path / "state"
    with running_guard(guard_config(home, state)) as (guard, events):
        attack = as_user([b"sh", b"-c", b"cat \"$1\"; \"$2\" \"$3\"", b"sh", bad, reader,
                          os.fsencode(home.key)])
        assert attack.stdout == b"" and attack.stderr.count(b"Operation not permitted") == 2
        guard.flush()
        decisions = [e for e in events if isinstance(e, GuardDecision)]
    targets = sorted(os.fsencode(d.file) for d in decisions)
    assert targets == sorted([bad, os.fsencode(home.key)])
    db = sqlite3.connect(state / "audit.db")
    try:
        rows = db.execute("SELECT executable, target FROM audit").fetchall()
    finally:
        db.close()
    assert sorted(rows) == sorted([("/usr/bin/cat", f"{home.ssh}/id_\\xff\\xfe"),
                                   (f"{scratch}/\\x80cat", str(home.key))])


def test_a_full_inode_registry_does_not_unprotect_a_key_made_later(
        home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack ran with the real cap: 10,050 empty files named ~/.ssh/id_fillN made by the
    user (mknod, 69 s), then a new key from ssh-keygen, renamed to ~/k and read with cat. Here
    the cap is 3 so that the same happens with a handful of files."""
    import os

    import fluxtui.guard.inodes as inodes_module
    from tests.guard_support import wait_for

    monkeypatch.setattr(inodes_module, "MAX_TRACKED", 3)
    fill = "import os,sys\nfor i in range(5): os.mknod(f'{sys.argv[1]}/id_fill{i}', 0o100600)"
    new_key = home.ssh / "id_new"
    moved = home.root / "k"
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        assert as_user([PYTHON, "-c", fill, str(home.ssh)]).returncode == 0
        marks = guard.marks
        assert marks is not None
        wait_for(lambda: any("more than 3 protected inodes" in p
                             for p in marks.protected.problems))
        made = as_user(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(new_key)])
        assert made.returncode == 0, made.stderr
        key_id = (new_key.stat().st_dev, new_key.stat().st_ino)
        wait_for(lambda: key_id in marks.inodes)
        secret = new_key.read_bytes().splitlines()[1]
        os.rename(new_key, moved)
        cat = as_user(["cat", str(moved)])
    assert secret not in cat.stdout and b"Operation not permitted" in cat.stderr, cat


def test_gpg_export_secret_keys_through_the_agent_is_refused(home: Home,
                                                             tmp_path: Path) -> None:
    """gpg-agent was allowed for the gnupg group: `gpg --export-secret-keys` had it read the
    key file and print the key (no passphrase) while `cat` of the same file got EPERM."""
    import os

    require(shutil.which("gpg") is not None and shutil.which("gpgconf") is not None,
            "gpg missing (apt-get install gnupg)")
    gnupg = home.root / ".gnupg"
    gnupg.mkdir(mode=0o700)
    os.chown(gnupg, 65534, 65534)
    env = {"HOME": str(home.root), "GNUPGHOME": str(gnupg), "PATH": "/usr/bin:/bin"}
    loopback = ["--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    made = as_user(["gpg", *loopback, "--quick-gen-key", "victim@example.org", "ed25519",
                    "sign", "never"], env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    try:
        as_user(["gpgconf", "--kill", "gpg-agent"], env=env)  # the next one starts guarded
        with running_guard(guard_config(home, tmp_path / "state")):
            export = as_user(["gpg", *loopback, "--armor", "--export-secret-keys",
                              "victim@example.org"], env=env, timeout=60)
    finally:
        as_user(["gpgconf", "--kill", "gpg-agent"], env=env)
    assert b"PRIVATE KEY BLOCK" not in export.stdout, export


def test_a_request_with_other_arguments_does_not_join_a_prompt(home: Home,
                                                               tmp_path: Path) -> None:
    """`cat -A KEY` waited in the prompt of `cat KEY` (same executable, group, user, flags):
    the answer given to what the prompt showed let both read."""
    from tests.guard_support import started, wait_for

    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard, _):
        with started(["cat", str(home.key)]) as shown, \
                started(["cat", "-A", str(home.key)]) as other:
            wait_for(lambda: sum(p.requests for p in guard.pending()) == 2)
            prompts = guard.pending()
            assert len(prompts) == 2
            first = next(p for p in prompts if p.requester.pid == shown.pid)
            guard.answer(first.id, "allow", "once", "test: allow the cat shown")
            shown.communicate(timeout=10)
            assert shown.returncode == 0
            assert other.poll() is None  # still waiting for its own answer
            # The responder answers the kernel first, then updates what it shows: the list
            # catches up a moment after `cat` has read (bounded wait).
            wait_for(lambda: [p.requester.pid for p in guard.pending()] == [other.pid])
            assert other.poll() is None


def test_a_flood_of_waiting_readers_does_not_lock_out_an_allowed_one(home: Home,
                                                                     tmp_path: Path) -> None:
    """1,200 threads of one process opening the key filled the queue of waiting requests
    (1,000): every other open was denied as an overload, `ssh-keygen -y` included, while it
    needed no wait at all (executable verified before, catalogue verdict)."""
    from tests.guard_support import SSH_KEYGEN, started, wait_for

    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard, _):
        responder = guard._responder
        assert responder is not None
        first = as_user([SSH_KEYGEN, "-y", "-f", str(home.key)])  # verified and remembered
        assert first.returncode == 0, first.stderr
        responder.max_pending = 1
        with started(["cat", str(home.key)]):
            wait_for(guard.pending)
            again = as_user([SSH_KEYGEN, "-y", "-f", str(home.key)])
            assert again.returncode == 0, again.stderr
            cat = as_user(["cat", str(home.key)])
            assert cat.returncode == 1 and cat.stdout == b""  # still refused: it would wait
        assert responder.overloaded == 1
