"""The command line's operations flags: --version, --prometheus in both modes, headless-only
flags refused by the dashboard and doctor (one line, exit 2), FLUXTUI_CONFIG."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest

from fluxtui.journal import JOURNAL_SOCKET
from tests.kernel import require

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluxtui", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def quiet_config(tmp_path: Path) -> Path:
    """No kernel capability: quick to start and stop anywhere."""
    path = tmp_path / "config.yml"
    path.write_text("syscalls:\n  enabled: false\nguard:\n  enabled: false\n"
                    "network:\n  enabled: false\ngeneral:\n  refresh_interval: 0.2\n")
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()
    except OSError:
        return None


def test_version_is_the_installed_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"fluxtui {version('fluxtui')}\n"


@pytest.mark.parametrize(("flags", "named"), [
    (["--output", "text"], "--output"),
    (["--timeout", "5"], "--timeout"),
    (["--stream-file", "/tmp/never-written"], "--stream-file"),
    (["--stream-max-mb", "1", "--stream-backups", "2"], "--stream-max-mb, --stream-backups"),
])
def test_headless_only_flags_are_an_error_for_the_dashboard(flags: list[str], named: str) -> None:
    line = one_line_error(run_cli(*flags))
    assert line == f"fluxtui: {named}: only with --headless (not for the dashboard)"
    assert not Path("/tmp/never-written").exists()


def test_headless_only_flags_and_prometheus_are_an_error_for_doctor() -> None:
    assert one_line_error(run_cli("doctor", "--timeout", "3")) == (
        "fluxtui: --timeout: only with --headless (not for doctor)")
    assert one_line_error(run_cli("doctor", "--prometheus", "9464")) == (
        "fluxtui: --prometheus: not for doctor")


@pytest.mark.parametrize(("flags", "message"), [
    (["--prometheus", "localhost:99999"], "the port must be between 1 and 65535"),
    (["--prometheus", "nohost:80"], "is not an IP address"),
    (["--headless", "--stream-file", "x", "--output", "journal"], "choose one"),
    (["--headless", "--stream-max-mb", "0"], "--stream-max-mb: expected a positive size"),
    (["--headless", "--stream-backups", "-1"], "--stream-backups: expected 0 or more"),
])
def test_bad_values_are_one_line(flags: list[str], message: str) -> None:
    assert message in one_line_error(run_cli(*flags))


def test_a_stream_file_that_cannot_be_opened_is_one_line(quiet_config: Path,
                                                          tmp_path: Path) -> None:
    line = one_line_error(run_cli("--config", str(quiet_config), "--headless", "--stream-file",
                                  str(tmp_path / "missing-dir" / "s.jsonl")))
    assert line.startswith("fluxtui: cannot open ") and "No such file or directory" in line


def test_output_journal_needs_a_journal(quiet_config: Path) -> None:
    result = run_cli("--config", str(quiet_config), "--headless", "--output", "journal",
                     "--timeout", "1")
    if os.path.exists(JOURNAL_SOCKET):
        assert result.returncode == 0 and result.stdout == "", result.stderr
    else:
        assert one_line_error(result) == (
            "fluxtui: --output journal: no systemd journal running "
            f"({JOURNAL_SOCKET} does not exist)")


def test_fluxtui_config_names_the_configuration(tmp_path: Path) -> None:
    bad = tmp_path / "from-env.yml"
    bad.write_text("general:\n  refresh_interval: 0\n")
    bad.chmod(0o600)
    line = one_line_error(run_cli("--headless", "--timeout", "1",
                                  env={"FLUXTUI_CONFIG": str(bad)}))
    assert line.startswith(f"fluxtui: {bad}:2: general.refresh_interval")
    # --config wins over the environment.
    good = tmp_path / "good.yml"
    good.write_text("syscalls:\n  enabled: false\nguard:\n  enabled: false\n"
                    "network:\n  enabled: false\n")
    good.chmod(0o600)
    result = run_cli("--config", str(good), "--headless", "--timeout", "1", "--no-journal",
                     env={"FLUXTUI_CONFIG": str(bad)})
    assert result.returncode == 0, result.stderr


def test_headless_serves_metrics_and_refuses_a_taken_port(quiet_config: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fluxtui", "--config", str(quiet_config),
                             "--headless", "--no-journal", "--prometheus", f"127.0.0.1:{port}"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        text = None
        for _ in range(600):  # bounded: the condition, not the time, is what is tested
            text = scrape(port)
            if text and "fluxtui_engine_ticks_total" in text:
                break
            time.sleep(0.1)
        assert text and "fluxtui_engine_ticks_total" in text
        assert 'fluxtui_collector_up{collector="processes"} 1.0' in text
        assert 'fluxtui_output_dropped_total{output="stream"} 0.0' in text
        taken = run_cli("--config", str(quiet_config), "--headless", "--prometheus", str(port))
        assert one_line_error(taken) == (
            f"fluxtui: --prometheus: cannot listen on 127.0.0.1:{port}: Address already in use")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_dashboard_serves_metrics_while_it_runs(tmp_path: Path, quiet_config: Path) -> None:
    require(shutil.which("tmux") is not None, "tmux not installed (make test installs it)")
    server = f"fluxtui-ops-{uuid.uuid4().hex[:8]}"
    port = free_port()
    exit_file = tmp_path / "exit-code"
    command = (f"cd {REPO} && {sys.executable} -m fluxtui --config {quiet_config} "
               f"--prometheus {port}; echo $? > {exit_file}")

    def tmux(*args: str) -> None:
        subprocess.run(["tmux", "-L", server, "-f", "/dev/null", *args], check=True,
                       capture_output=True, timeout=30)

    tmux("new-session", "-d", "-s", "ops", "-x", "160", "-y", "48", command)
    try:
        text = None
        for _ in range(600):
            text = scrape(port)
            if text and "fluxtui_engine_ticks_total" in text:
                break
            time.sleep(0.1)
        assert text and 'fluxtui_collector_up{collector="metrics"} 1.0' in text
        tmux("send-keys", "-t", "ops", "q")
        for _ in range(300):
            if exit_file.exists() and exit_file.read_text().strip():
                break
            time.sleep(0.1)
        assert exit_file.read_text().strip() == "0"
        assert scrape(port) is None  # the endpoint went with the dashboard
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, timeout=30)


def test_doctor_advice_for_bcc_names_the_venv_way(monkeypatch: pytest.MonkeyPatch) -> None:
    from fluxtui.doctor import check_bcc

    monkeypatch.setitem(sys.modules, "bcc", None)  # import bcc raises ImportError
    check = check_bcc()
    assert not check.ok
    assert "python3-bpfcc" in check.fix and "--system-site-packages" in check.fix
