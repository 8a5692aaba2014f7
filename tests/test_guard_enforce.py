"""The guard end to end on the real kernel: a temporary home with real keys, real programs.

Only the temporary home is marked (guard.homes points at it, system_files is empty). Every test
stops the guard, which closes its fanotify fd, even when it fails (see guard_support)."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import fluxtui.capabilities.guard as guard_module
import fluxtui.guard.responder as responder_module
import fluxtui.guard.verifier as verifier_module
from fluxtui.bus import EventBus
from fluxtui.capabilities.guard import GuardComponent
from fluxtui.collectors.fanotify import FAN_Q_OVERFLOW, FanEvent, FanotifyGroup
from fluxtui.config import AllowedProgram, CredentialGroup
from fluxtui.ecs import document
from fluxtui.events import ComponentState
from fluxtui.guard.events import GuardDecision, PromptView
from fluxtui.guard.identity import ExeKey
from tests.guard_support import (
    SSH_KEYGEN,
    Home,
    fanotify_fds,
    guard_config,
    kernel_marked_inodes,
    make_home,
    require_guard_kernel,
    run,
    running_guard,
    started,
    wait_for,
)

pytestmark = pytest.mark.kernel
EPERM = b"Operation not permitted"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    require_guard_kernel()
    return make_home(tmp_path)


def _decisions(guard: GuardComponent, events: list[object]) -> list[GuardDecision]:
    """The decisions published so far. The kernel is answered before a decision is published,
    so a reader can finish before its decision is out: wait (bounded) for at least one."""

    def published() -> list[GuardDecision]:
        guard.flush()
        return [e for e in events if isinstance(e, GuardDecision)]

    return wait_for(published)


def _public_key(home: Home) -> bytes:
    return home.pub.read_bytes().split(b" ")[1]


def test_allowed_program_reads_and_others_get_eperm_and_no_bytes(home: Home,
                                                                  tmp_path: Path) -> None:
    copy = tmp_path / "stolen"
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        keygen = run([SSH_KEYGEN, "-y", "-f", str(home.key)])
        assert keygen.returncode == 0, keygen.stderr
        assert _public_key(home) in keygen.stdout

        cat = run(["cat", str(home.key)])
        assert cat.returncode == 1 and cat.stdout == b"" and EPERM in cat.stderr
        cp = run(["cp", str(home.key), str(copy)])
        assert cp.returncode == 1 and EPERM in cp.stderr
        assert not copy.exists() or copy.read_bytes() == b""
        py = run([sys.executable, "-c", f"print(open({str(home.aws)!r}).read())"])
        assert py.returncode == 1 and py.stdout == b"" and b"PermissionError" in py.stderr

        # Public parts and files outside the catalogue stay readable.
        assert run(["cat", str(home.pub)]).returncode == 0
        assert run(["cat", str(home.root / ".bashrc")]).stdout == b"# not a credential\n"
        assert run(["cat", str(home.ssh / "known_hosts")]).returncode == 0

        decisions = _decisions(guard, events)
    by_exe = {(d.requester.exe.rsplit("/", 1)[-1], d.file): d for d in decisions}
    allowed = by_exe[("ssh-keygen", str(home.key))]
    assert allowed.allowed and allowed.decided_by == "catalogue"
    assert allowed.requester.verified and allowed.requester.package == "openssh-client"
    denied = by_exe[("cat", str(home.key))]
    assert not denied.allowed and denied.decided_by == "headless"
    assert by_exe[("cp", str(home.key))].allowed is False
    assert not any(d.file.endswith((".pub", ".bashrc", "known_hosts")) for d in decisions)
    python = next(d for d in decisions if d.file == str(home.aws))
    assert not python.allowed and python.group == "aws"

    doc = document(denied)
    assert doc["event"]["category"] == ["file"] and doc["event"]["outcome"] == "failure"
    assert doc["file"]["path"] == str(home.key)
    assert doc["process"]["executable"].endswith("/cat")
    assert doc["threat"]["technique"]["id"] == ["T1552.004"]
    assert document(python)["threat"]["technique"]["id"] == ["T1552.001"]
    assert document(allowed)["event"]["outcome"] == "success"
    json.dumps(doc)  # serialisable as one JSON line


def test_audit_trail_holds_every_request(home: Home, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_guard(guard_config(home, state)) as (guard, _events):
        run(["cat", str(home.key)])
        run([SSH_KEYGEN, "-y", "-f", str(home.key)])

        def both_recorded() -> list[dict[str, object]]:
            # The kernel is answered first, the decision recorded after: wait (bounded).
            guard.flush()
            history = guard.history()
            return history if len(history) >= 2 else []

        history = wait_for(both_recorded)
    assert [h["outcome"] for h in history[:2]] == ["allowed", "denied"]  # newest first
    with sqlite3.connect(state / "audit.db") as db:
        rows = db.execute("SELECT outcome, executable, target, category, decided_by, "
                          "latency_us, user, detail FROM audit ORDER BY id").fetchall()
    assert [(r[0], r[1].rsplit("/", 1)[-1], r[2], r[3], r[4]) for r in rows] == [
        ("denied", "cat", str(home.key), "ssh-keys", "headless"),
        ("allowed", "ssh-keygen", str(home.key), "ssh-keys", "catalogue")]
    assert all(r[5] is not None and r[5] >= 0 and r[6] == "root" for r in rows)
    assert json.loads(rows[0][7])["technique"] == "T1552.004"


def test_rename_replace_and_files_created_after_start_stay_protected(home: Home,
                                                                      tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        replacement = home.ssh / "id_ed25519.tmp"
        replacement.write_text("new secret\n")
        os.replace(replacement, home.key)  # the inode that was marked is gone
        cat = run(["cat", str(home.key)])
        assert cat.returncode == 1 and cat.stdout == b"" and EPERM in cat.stderr

        created = home.ssh / "id_work"
        created.write_text("created after start\n")
        cat = run(["cat", str(created)])
        assert cat.returncode == 1 and cat.stdout == b""

        # The re-plan also puts an inode mark on the new file.
        assert guard.marks is not None
        wait_for(lambda: str(created) in guard.marks.plan.files)


def test_credential_directory_created_after_start_is_picked_up(home: Home,
                                                               tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        kube = home.root / ".kube"
        kube.mkdir()
        assert guard.marks is not None
        wait_for(lambda: str(kube) in guard.marks.marked_paths())
        config = kube / "config"
        config.write_text("token: secret\n")
        cat = run(["cat", str(config)])
        assert cat.returncode == 1 and cat.stdout == b"" and EPERM in cat.stderr

        # Deeper: a new Firefox profile under directories that did not exist at start.
        profile = home.root / ".mozilla" / "firefox" / "abcd.default"
        profile.mkdir(parents=True)
        wait_for(lambda: str(profile) in guard.marks.marked_paths())
        (profile / "logins.json").write_text("{}")
        assert run(["cat", str(profile / "logins.json")]).returncode == 1
        (profile / "prefs.js").write_text("ok")
        assert run(["cat", str(profile / "prefs.js")]).returncode == 0


def test_a_credential_directory_replaced_at_the_same_path_is_marked_and_watched(
        home: Home, tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        assert guard.marks is not None and guard._fan is not None
        old = home.ssh.stat().st_ino
        home.ssh.rename(home.root / ".ssh.bak")
        home.ssh.mkdir(mode=0o700)
        new = home.ssh.stat().st_ino
        wait_for(lambda: new in kernel_marked_inodes(guard._fan.fd)
                 and old not in kernel_marked_inodes(guard._fan.fd))
        created = home.ssh / "id_new"
        created.write_text("new key\n")
        wait_for(lambda: str(created) in guard.marks.plan.files)  # the new dir is watched
        cat = run(["cat", str(created)], timeout=10)
        assert cat.returncode == 1 and cat.stdout == b""


def test_other_path_to_the_same_file_is_protected(home: Home, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        link = elsewhere / "innocent.txt"
        os.link(home.key, link)  # a hard link outside every marked directory
        cat = run(["cat", str(link)])
        assert cat.returncode == 1 and cat.stdout == b""
        assert _decisions(guard, events)[-1].group == "ssh-keys"


@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_LIBRARY_PATH"])
def test_allowed_program_with_injection_variable_is_not_auto_allowed(
        home: Home, tmp_path: Path, variable: str) -> None:
    libc = "/lib/x86_64-linux-gnu/libc.so.6" if variable == "LD_PRELOAD" else str(tmp_path)
    env = {**os.environ, variable: libc}
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        keygen = run([SSH_KEYGEN, "-y", "-f", str(home.key)], env=env)
        assert keygen.returncode != 0 and _public_key(home) not in keygen.stdout
        decision = _decisions(guard, events)[-1]
    assert not decision.allowed and f"{variable} set" in decision.requester.flags
    assert "flagged" in decision.reason


def test_allowed_program_under_strace_is_not_auto_allowed(home: Home, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.fail("strace missing (make setup installs it)")
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        traced = run(["strace", "-f", "-o", "/dev/null", SSH_KEYGEN, "-y", "-f",
                      str(home.key)])
        assert traced.returncode != 0 and _public_key(home) not in traced.stdout
        decision = next(d for d in _decisions(guard, events) if d.file == str(home.key))
    assert not decision.allowed
    assert any(f.startswith("traced by pid") for f in decision.requester.flags)


@pytest.mark.parametrize("process_events", [True, False])
def test_tracer_attached_later_to_a_verified_process_is_seen(
        home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        process_events: bool) -> None:
    """git (listed for ssh-keys in this test's catalogue, verified) opens the key, is cached as
    allowed; then strace attaches to that same process; its next open must not ride on the
    cached allowance. With kernel process events (the fast path) and without them (re-read
    /proc on each open). (The default lists no longer name git: it reads any named file.)"""
    git = shutil.which("git")
    if git is None or shutil.which("strace") is None:
        pytest.fail("git and strace are needed (make setup installs them)")
    if not process_events:
        def unavailable() -> object:
            raise OSError(93, "Protocol not supported")

        monkeypatch.setattr(guard_module, "ProcEvents", unavailable)
    groups = [CredentialGroup("ssh-keys", "T1552.004", [".ssh/id_*"],
                              [AllowedProgram(os.path.realpath(git))])]
    with running_guard(guard_config(home, tmp_path / "state", groups=groups)) as (guard,
                                                                                   events):
        assert (guard.view().process_events == "kernel process events") == process_events

        def git_decisions() -> list[GuardDecision]:
            return [d for d in _decisions(guard, events) if d.requester.exe.endswith("/git")]

        with started([git, "hash-object", "--stdin-paths"], stdin=subprocess.PIPE) as reader:
            assert reader.stdin is not None
            reader.stdin.write(f"{home.key}\n".encode())
            reader.stdin.flush()
            first = wait_for(git_decisions)[0]
            assert first.allowed and first.decided_by == "catalogue"
            with started(["strace", "-o", "/dev/null", "-p", str(reader.pid)]):
                wait_for(lambda: b"TracerPid:\t0\n" not in
                         Path(f"/proc/{reader.pid}/status").read_bytes())
                reader.stdin.write(f"{home.key}\n".encode())
                reader.stdin.flush()
                second = wait_for(lambda: git_decisions()[1:])[0]
    assert not second.allowed
    assert any(f.startswith("traced by pid") for f in second.requester.flags)


def test_monitor_mode_allows_and_logs(home: Home, tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state", mode="monitor")) as (guard,
                                                                                     events):
        cat = run(["cat", str(home.key)])
        assert cat.returncode == 0 and cat.stdout == home.key.read_bytes()
        decision = _decisions(guard, events)[-1]
    assert decision.allowed and decision.decided_by == "monitor" and decision.mode == "monitor"


def test_our_own_process_is_allowed_at_once(home: Home, tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        assert home.key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        guard.flush()
        assert [e for e in events if isinstance(e, GuardDecision)] == []


@pytest.mark.parametrize(("default", "code"), [("deny", 1), ("allow", 0)])
def test_timeout_applies_the_default_action(home: Home, tmp_path: Path, default: str,
                                            code: int) -> None:
    config = guard_config(home, tmp_path / "state", decision_timeout=1.0,
                          default_action=default)
    with running_guard(config, interactive=True) as (guard, events):
        with started(["cat", str(home.key)]) as cat:
            wait_for(guard.pending)
            out, _ = cat.communicate(timeout=15)
        assert cat.returncode == code and (out == b"") == (default == "deny")
        wait_for(lambda: guard.pending() == ())
        decision = _decisions(guard, events)[-1]
    assert decision.decided_by == "timeout" and decision.allowed == (default == "allow")


def test_exiting_process_cancels_its_prompt(home: Home, tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard,
                                                                                       events):
        with started(["cat", str(home.key)]) as cat:
            prompt = wait_for(guard.pending)[0]
            assert prompt.requester.pid == cat.pid
            os.kill(cat.pid, signal.SIGKILL)
            cat.wait(timeout=10)
            wait_for(lambda: guard.pending() == ())
        decision = _decisions(guard, events)[-1]
    assert decision.decided_by == "process-exit"


def test_prompt_groups_requests_and_answers_them_together(home: Home, tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard,
                                                                                       events):
        with started(["cat", str(home.key)]) as one, started(["cat", str(home.key)]) as two:
            wait_for(lambda: guard.pending() and guard.pending()[0].requests == 2)
            assert len(guard.pending()) == 1  # one prompt for (cat, ssh-keys)
            prompt = guard.pending()[0]
            assert set(prompt.pids) == {one.pid, two.pid}
            guard.answer(prompt.id, "allow", "once", "test: allow once")
            outs = [p.communicate(timeout=10)[0] for p in (one, two)]
        assert [p.returncode for p in (one, two)] == [0, 0]
        assert outs == [home.key.read_bytes()] * 2
        prompts = [e for e in events if isinstance(e, PromptView)]
        assert prompts and document(prompts[0])["event"]["outcome"] == "unknown"


def test_requests_of_another_user_get_their_own_prompt(home: Home, tmp_path: Path) -> None:
    def other_real_user() -> None:  # still able to read the key (euid 0), but not the same
        os.setresuid(65534, 0, 0)

    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard, _):
        with started(["cat", str(home.key)]), \
                started(["cat", str(home.key)], preexec_fn=other_real_user):
            wait_for(lambda: sum(p.requests for p in guard.pending()) == 2)
            assert len(guard.pending()) == 2
            assert {p.requester.uid for p in guard.pending()} == {0, 65534}


def test_always_rule_survives_a_restart_and_bad_rules_files_are_refused(
        home: Home, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = guard_config(home, state)
    with running_guard(config, interactive=True) as (guard, _):
        with started(["cat", str(home.key)]) as cat:
            prompt = wait_for(guard.pending)[0]
            guard.answer(prompt.id, "allow", "always", "test: allow always")
            out, _ = cat.communicate(timeout=10)
        assert cat.returncode == 0 and out == home.key.read_bytes()
        wait_for(lambda: (state / "rules.yml").exists())
    # A new guard reads the rule back: headless, no prompt, cat is allowed by the rule.
    with running_guard(config) as (guard, events):
        assert [r.group for r in guard.rules()] == ["ssh-keys"]
        cat2 = run(["cat", str(home.key)])
        assert cat2.returncode == 0
        decision = _decisions(guard, events)[-1]
        assert decision.decided_by == "rule" and "always allow rule" in decision.reason
        # ...but not for another group.
        assert run(["cat", str(home.aws)]).returncode == 1
    # A corrupt rules file: refused with one message, left untouched, nothing is allowed.
    rules = state / "rules.yml"
    rules.write_text("version: 1\nrules: [oops\n")
    os.chmod(rules, 0o600)
    with running_guard(config) as (guard, _):
        assert guard.rules_error is not None and "refused" in guard.rules_error
        assert run(["cat", str(home.key)]).returncode == 1
        assert "rules file refused" in guard.status().detail
    assert rules.read_text() == "version: 1\nrules: [oops\n"


def test_errors_fail_closed_and_are_reported(home: Home, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> object:
        raise OSError("simulated failure while hashing")

    monkeypatch.setattr(verifier_module, "verify_executable", broken)
    config = guard_config(home, tmp_path / "state", default_action="allow")
    with running_guard(config) as (guard, events):
        cat = run(["cat", str(home.key)])
        assert cat.returncode == 1 and cat.stdout == b""
        decision = _decisions(guard, events)[-1]
    assert decision.decided_by == "error" and "simulated failure" in decision.reason


def test_an_error_in_the_loop_does_not_stop_the_responder(home: Home, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    original = responder_module.Responder._on_fanotify
    calls = []

    def fails_once(self: responder_module.Responder) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated loop failure")
        original(self)

    monkeypatch.setattr(responder_module.Responder, "_on_fanotify", fails_once)
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        cat = run(["cat", str(home.key)], timeout=10)
        assert cat.returncode == 1 and cat.stdout == b""
        assert guard.status().state is ComponentState.RUNNING
        assert "simulated loop failure" in " ".join(guard.view().problems)


def test_a_dead_responder_releases_every_waiting_open(home: Home, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def always_fails(self: responder_module.Responder) -> None:
        raise RuntimeError("simulated persistent failure")

    monkeypatch.setattr(responder_module.Responder, "_on_fanotify", always_fails)
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        # Nobody answers any more: the group is closed, the kernel lets the open through.
        cat = run(["cat", str(home.key)], timeout=10)
        assert cat.returncode == 0
        status = wait_for(lambda: guard.status().state is ComponentState.UNAVAILABLE
                          and guard.status())
        assert "repeated errors" in status.reason


def test_too_many_waiting_requests_are_denied_at_once(home: Home, tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard,
                                                                                       events):
        assert guard._responder is not None
        guard._responder.max_pending = 1
        with started(["cat", str(home.key)]):
            wait_for(guard.pending)
            cat = run(["cat", str(home.key)], timeout=10)
            assert cat.returncode == 1 and cat.stdout == b""
            assert len(guard.pending()) == 1 and guard.pending()[0].requests == 1
        decided_by = [d.decided_by for d in _decisions(guard, events)]
    assert decided_by.count("overload") == 1


def test_fd_limit_is_raised_to_the_hard_limit(home: Home, tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
        with running_guard(guard_config(home, tmp_path / "state")):
            now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limit = hard
    if hard == resource.RLIM_INFINITY:
        limit = int(Path("/proc/sys/fs/nr_open").read_text())
    assert now == limit


def test_a_queue_overflow_is_counted_and_reported(home: Home, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    original = FanotifyGroup.read_events
    injected = []

    def with_overflow(self: FanotifyGroup) -> list[FanEvent]:
        events = original(self)
        if events and not injected:
            injected.append(1)
            return [FanEvent(FAN_Q_OVERFLOW, -1, 0), *events]
        return events

    monkeypatch.setattr(FanotifyGroup, "read_events", with_overflow)
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, _):
        assert run(["cat", str(home.key)], timeout=10).returncode == 1
        view = guard.view()
    assert view.errors == 1 and any("overflowed 1 time" in p for p in view.problems)


def test_a_verification_of_another_file_is_not_applied(home: Home, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = verifier_module.verify_executable
    calls = []

    def first_for_another_file(pid: int, exe: str, system_dirs: tuple[str, ...],
                               **kwargs: object) -> object:
        calls.append(pid)
        verification = real(pid, exe, system_dirs)
        if len(calls) > 1:
            return verification
        # As if the process had run ssh-keygen, a program allowed to read keys, by the time
        # its executable was hashed.
        keygen = os.stat(SSH_KEYGEN)
        return dataclasses.replace(real(os.getpid(), sys.executable, system_dirs),
                                   path=SSH_KEYGEN, key=ExeKey.of(keygen), package="openssh",
                                   package_match=True, system_dir=True, problems=())

    monkeypatch.setattr(verifier_module, "verify_executable", first_for_another_file)
    with running_guard(guard_config(home, tmp_path / "state")) as (guard, events):
        cat = run(["cat", str(home.key)], timeout=10)
        assert cat.returncode == 1 and cat.stdout == b""
        decision = _decisions(guard, events)[-1]
    assert len(calls) == 2 and decision.decided_by == "headless"


def test_cached_allowances_are_answered_through_the_group(home: Home, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    original = FanotifyGroup.respond
    answers: list[bool] = []

    def counted(self: FanotifyGroup, event_fd: int, allow: bool) -> bool:
        answers.append(allow)
        return original(self, event_fd, allow)

    monkeypatch.setattr(FanotifyGroup, "respond", counted)
    script = f"for i in 1 2 3 4; do exec 3<{home.key}; exec 3<&-; done; echo read"
    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard, _):
        with started(["bash", "-c", script]) as bash:
            prompt = wait_for(guard.pending)[0]
            guard.answer(prompt.id, "allow", "process", "test: allow this process")
            out, _err = bash.communicate(timeout=10)
        assert out == b"read\n"
        responder = guard._responder
        assert responder is not None
        # The kernel is answered before the counters move: wait (bounded) for the fourth.
        wait_for(lambda: responder.allowed >= 4)
        assert responder.allowed == 4  # the last ones from the verdict cache
        assert answers.count(True) == responder.allowed + responder.passed


def test_unavailable_without_root_and_the_fd_is_always_closed(home: Home,
                                                              tmp_path: Path) -> None:
    repo = str(Path(__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {repo!r})\n"
            "from fluxtui.capabilities.guard import GuardComponent\n"
            "from fluxtui.config import GuardConfig\n"
            "from fluxtui.component import EventBus\n"
            f"g = GuardComponent(GuardConfig(homes=[{str(home.root)!r}], system_files=[]),"
            " interactive=False)\n"
            "g.start(EventBus()); print(g.status().state.value, '|', g.status().reason)\n")
    nobody = run([sys.executable, "-c", code], user=65534, group=65534, cwd="/")
    assert nobody.returncode == 0, nobody.stderr
    assert nobody.stdout.decode().strip() == (
        "unavailable | needs root (fanotify permission events need CAP_SYS_ADMIN)")

    before = fanotify_fds()
    guard = GuardComponent(guard_config(home, tmp_path / "state"), interactive=False)
    try:
        guard.start(EventBus())
        assert guard.status().state is ComponentState.RUNNING and fanotify_fds() == before + 1
    finally:
        guard.stop()
    assert fanotify_fds() == before
