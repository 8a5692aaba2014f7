from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fluxtui import doctor
from fluxtui.config import Config
from fluxtui.doctor import Check
from tests.kernel import require_bcc

REPO = Path(__file__).resolve().parents[1]


def test_doctor_reports_every_capability_as_ok_on_this_machine() -> None:
    require_bcc()
    result = subprocess.run([sys.executable, "-m", "fluxtui", "doctor", "--config", "config.yml"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    names = ["root", "bcc", "kernel headers", "tracefs", "kernel BTF", "BPF load",
             "syscall capture",
             "fanotify permission events", "netlink sock_diag", "journald"]
    for name in names:
        assert any(name in line for line in lines), result.stdout
    for name in names[:-1]:  # journald is optional: absent on machines without systemd
        line = next(line for line in lines if f" {name} " in line + " ")
        assert line.strip().startswith("ok"), result.stdout
    assert result.returncode == 0, result.stdout


def test_doctor_names_the_fix_for_what_is_missing(monkeypatch, capsys) -> None:
    missing = Check("bcc", False, "not importable", "apt-get install python3-bpfcc")
    optional = Check("journald", False, "no journal", "run under systemd", required=False)
    monkeypatch.setattr(doctor, "CHECKS", [lambda: missing, lambda: optional])
    assert doctor.run_doctor(Config()) == 1
    out = capsys.readouterr().out
    assert "MISSING bcc" in out and "fix: apt-get install python3-bpfcc" in out
    assert "absent  journald" in out
    monkeypatch.setattr(doctor, "CHECKS", [lambda: optional])
    assert doctor.run_doctor(Config()) == 0  # an optional capability does not fail it


def test_doctor_as_a_non_root_user_prints_every_check_with_its_reason(tmp_path: Path) -> None:
    """As `nobody`, much of /sys and /proc is closed: no traceback, every check printed, each
    one that is not available saying why."""
    import os
    import shutil

    from tests.kernel import require, require_root

    require_root()
    require(shutil.which("setpriv") is not None, "setpriv missing (util-linux)")
    os.chmod(tmp_path, 0o755)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"HOME={tmp_path}",
         sys.executable, "-m", "fluxtui", "doctor", "--config", str(REPO / "config.yml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    names = ["root", "bcc", "kernel headers", "tracefs", "kernel BTF", "BPF load",
             "syscall capture", "fanotify permission events", "netlink sock_diag", "journald"]
    for name in names:
        line = next((line for line in lines if f" {name} " in line + " "), None)
        assert line is not None, f"{name} missing:\n{result.stdout}"
        status = line.split()[0]
        assert status in ("ok", "MISSING", "absent")
        if status != "ok":
            assert len(line.split(name, 1)[1].strip()) > 5, line  # says why
    tracefs = next(line for line in lines if " tracefs " in line)
    assert "needs root" in tracefs
    assert result.returncode == 1  # required capabilities are missing for nobody


def test_a_check_that_fails_unexpectedly_is_reported_not_raised(monkeypatch, capsys) -> None:
    def broken() -> Check:
        raise PermissionError(13, "Permission denied", "/sys/kernel/something")

    monkeypatch.setattr(doctor, "CHECKS", [broken])
    assert doctor.run_doctor(Config()) == 1
    out = capsys.readouterr().out
    assert "MISSING broken" in out and "needs root" in out
