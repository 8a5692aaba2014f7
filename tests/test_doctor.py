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
