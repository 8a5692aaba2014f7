"""A scenario runs in its own cgroups and directories and leaves nothing behind: not when it
leaves helpers running, not when the evaluation is interrupted, not after a SIGKILL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxtui.evaluation.manifest import load_manifest
from fluxtui.evaluation.runner import LAUNCHER, scenario_env
from fluxtui.evaluation.sandbox import (
    MARKER,
    PREFIX,
    TEMP_ROOTS,
    RunSandbox,
    cgroup2_root,
    clean_stale,
    make_temp_dir,
    own_cgroup,
)
from tests.kernel import require, require_root

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo"


def require_cgroup2() -> Path:
    require_root()
    root = cgroup2_root()
    require(root is not None, "no cgroup v2 hierarchy mounted")
    assert root is not None
    return root


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def launch(sandbox, run: RunSandbox, script: Path, timeout: float = 60
           ) -> subprocess.CompletedProcess[str]:
    """Run a scenario script as the evaluation does (output to a file: helpers it leaves
    running keep a pipe open)."""
    log = run.temp / "logs" / f"{sandbox.cgroup.name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["/bin/bash", "-c", LAUNCHER, "launch", str(sandbox.cgroup),
                                 str(script)], env=scenario_env(sandbox, run.decoy),
                                cwd=sandbox.work, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
    text = log.read_text()
    return subprocess.CompletedProcess(proc.args, proc.returncode, text, text)


LEAKY = f"""#!/bin/bash
. {DEMO}/lib.sh
setsid sleep 300 </dev/null >/dev/null 2>&1 &
echo "daemon $!"
support sleep 300
echo "support $!"
touch "$FLUX_WORK/f" "$FLUX_SHM/f" "$FLUX_VARTMP/f"
trap - EXIT  # leave the helpers running, on purpose
"""


@pytest.mark.kernel
def test_a_scenario_that_leaves_daemons_and_files_is_cleaned_up(tmp_path: Path) -> None:
    require_cgroup2()
    script = tmp_path / "leaky.sh"
    script.write_text(LEAKY)
    script.chmod(0o755)
    run = RunSandbox()
    try:
        sandbox = run.scenario("leaky")
        try:
            done = launch(sandbox, run, script)
            assert done.returncode == 0, done.stderr
            pids = {line.split()[0]: int(line.split()[1]) for line in done.stdout.splitlines()}
            assert all(alive(pid) for pid in pids.values())  # still running after the script
            dirs = [sandbox.work, sandbox.shm, sandbox.vartmp]
            assert all((d / "f").exists() for d in dirs)
        finally:
            clean = sandbox.close()
        assert clean
        assert not any(alive(pid) for pid in pids.values())
        assert not any(d.exists() for d in dirs) and not sandbox.cgroup.exists()
    finally:
        run.close()
    assert not run.cgroup.exists() and not run.temp.exists()


@pytest.mark.kernel
def test_every_shipped_scenario_runs_and_leaves_nothing() -> None:
    """Without the engine: each script runs as written (or says which tool it lacks) and its
    cgroups and directories are gone afterwards."""
    require_cgroup2()
    run = RunSandbox()
    problems = []
    try:
        for scenario in load_manifest(DEMO):
            sandbox = run.scenario(scenario.name)
            try:
                done = launch(sandbox, run, scenario.script, scenario.timeout)
            finally:
                clean = sandbox.close()
            if done.returncode not in (0, 77):
                problems.append(f"{scenario.name}: exit {done.returncode}: {done.stderr[-300:]}")
            if not clean:
                problems.append(f"{scenario.name}: left something behind")
    finally:
        run.close()
    assert not problems, "\n".join(problems)


def test_scripts_refuse_to_run_without_a_decoy_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "FLUX_WORK": str(tmp_path),
           "FLUX_SHM": str(tmp_path), "FLUX_VARTMP": str(tmp_path), "FLUX_PORT": "1"}
    done = subprocess.run([str(DEMO / "attacks" / "cred-read-python.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "not a fluxtui decoy home" in done.stderr


@pytest.mark.kernel
def test_what_a_killed_run_left_is_removed_by_the_next() -> None:
    root = require_cgroup2()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = root / own_cgroup().lstrip("/") / f"{PREFIX}{gone.pid}"
    (stale / "01-x" / "actor").mkdir(parents=True)
    victim = subprocess.Popen(["/bin/bash", "-c", f'echo $$ > {stale}/01-x/actor/cgroup.procs;'
                               " exec sleep 300"], start_new_session=True)
    directory = make_temp_dir("/dev/shm", owner=gone.pid)
    try:
        deadline = time.monotonic() + 10
        while not (stale / "01-x" / "actor" / "cgroup.procs").read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        removed = clean_stale(root)
        assert str(stale) in removed and str(directory) in removed
        assert not stale.exists() and not directory.exists()
        assert victim.wait(timeout=10) == -signal.SIGKILL
    finally:
        victim.kill()
        victim.wait()


def test_a_directory_without_the_marker_is_never_removed(tmp_path: Path) -> None:
    unmarked = Path("/tmp") / f"{PREFIX}not-ours-{os.getpid()}"
    unmarked.mkdir()
    try:
        clean_stale(None)
        assert unmarked.exists()
    finally:
        unmarked.rmdir()


def _leftovers(pid: int) -> list[str]:
    found = []
    root = cgroup2_root()
    if root is not None:
        found += [str(p) for p in (root / own_cgroup().lstrip("/")).glob(f"{PREFIX}{pid}")]
    for temp in TEMP_ROOTS:
        for path in Path(temp).glob(PREFIX + "*"):
            try:
                if (path / MARKER).read_text().strip() == str(pid):
                    found.append(str(path))
            except OSError:
                continue
    return found


def _sigcatch(pid: int) -> bool:
    """Whether `pid` has a handler for SIGINT (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    return False


def _sigint_as_a_shell() -> None:
    """The child gets Ctrl-C as from an interactive shell: SIGINT neither ignored nor blocked,
    whatever this test process inherited or was left with (an ignored SIGINT is inherited
    across exec, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.kernel
def test_ctrl_c_during_a_scenario_removes_its_processes_and_directories(
        safe_config: Path) -> None:
    root = require_cgroup2()
    proc = subprocess.Popen([sys.executable, "-m", "fluxtui", "--config", str(safe_config),
                             "evaluate", "--scenario", "http-server-curl",
                             "--training-runs", "0"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_a_shell)
    try:
        support = root / own_cgroup().lstrip("/") / f"{PREFIX}{proc.pid}" / \
            "01-http-server-curl" / "support" / "cgroup.procs"
        deadline = time.monotonic() + 240  # a BPF compile on a busy machine comes first
        while not (support.exists() and support.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the scenario never started"
            time.sleep(0.05)
        server = int(support.read_text().split()[0])
        caught = _sigcatch(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, f"{err}\nSIGINT caught by the child: {caught}"
    assert "interrupted" in err
    assert not alive(server)
    assert _leftovers(proc.pid) == []


def test_the_stand_ins_for_dev_shm_and_var_tmp_are_world_writable_and_sticky() -> None:
    """A script drops files into $FLUX_SHM / $FLUX_VARTMP as into /dev/shm and /var/tmp: the
    rules must see the place as those are (1777), while $FLUX_WORK stays private (0700)."""
    require_cgroup2()
    run = RunSandbox()
    try:
        sandbox = run.scenario("modes")
        try:
            assert stat.S_IMODE(sandbox.work.stat().st_mode) == 0o700
            for shared in (sandbox.shm, sandbox.vartmp):
                assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
        finally:
            assert sandbox.close()
    finally:
        run.close()
