"""Resident memory of the dashboard process with every collector on (issue 13).

Runs the product (`fluxtui --headless`, the engine with every component of the dashboard:
syscall capture and risk, the guard, connections with connect tracing, the anomaly model) for
DURATION seconds and reads the process's VmRSS and peak (VmHWM) from /proc/PID/status. The floor
is the same run, side by side, with eBPF off (syscalls.enabled and network.connect_trace false).
The same pair runs without the anomaly model too, to show what its libraries (numpy, scipy,
scikit-learn) hold.
Also shown: the peak of the short-lived bcc helper that compiles a program (it exits after
handing the program over) and whether the dashboard process mapped libbcc (it must not).

Safety: the guard runs in monitor mode on a temporary home with no system files, every state
file lives in a temporary directory, the stream goes to a temporary file.

    .venv/bin/python bench/bench_memory.py [--duration 600]
Needs root and bcc. Goal: <= 100 MB resident with every collector on.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fluxtui.collectors.syscalls import unavailable_reason  # noqa: E402

GOAL_MB = 100.0
MAPS_WHEN_LOADED = 15  # the syscall and connect programs' maps (20 here); fewer: still loading
LOAD_WAIT_S = 600  # at most this long for the eBPF runs to load their programs


def config_for(tmp: Path, ebpf: bool, anomaly: bool = True) -> Path:
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "id_ed25519").write_text("not a key: bench_memory.py\n")
    raw = {
        "syscalls": {"enabled": ebpf},
        "network": {"connect_trace": ebpf},
        "guard": {"mode": "monitor", "homes": [str(home)], "system_files": [],
                  "rules_file": str(tmp / "rules.yml"), "audit_db": str(tmp / "audit.db"),
                  "state_file": str(tmp / "inodes.json"), "journal": False},
        "anomaly": {"enabled": anomaly, "model_path": str(tmp / "anomaly.model"),
                    "store_path": str(tmp / "windows.db")},
    }
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[name] = int(value.split()[0])
    return out


def bpf_maps_held(pid: int) -> int:
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            if "map_type:" in Path(f"/proc/{pid}/fdinfo/{fd}").read_text():
                held += 1
        except OSError:
            continue
    return held


def start(tmp: Path, ebpf: bool, duration: float, anomaly: bool = True
          ) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "fluxtui", "--headless", "--config",
           str(config_for(tmp, ebpf, anomaly)),
           "--stream-file", str(tmp / "stream.json"), "--no-journal", "--log", str(tmp / "log"),
           "--timeout", str(duration + LOAD_WAIT_S + 120)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds before the resident size is read (default 600)")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"bench_memory: cannot run: {reason}")
        return 1
    runs = {"full": (True, True), "floor": (False, True), "no_anomaly": (True, False),
            "no_anomaly_floor": (False, False)}
    got = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for name, (ebpf, anomaly) in runs.items():
            (Path(tmp) / name).mkdir()
            procs[name] = start(Path(tmp) / name, ebpf, args.duration, anomaly)
        try:
            # The period starts once every eBPF run holds its programs (the helpers compile
            # one after another; on a loaded machine that takes a while).
            deadline = time.monotonic() + LOAD_WAIT_S
            while time.monotonic() < deadline and not all(
                    proc.poll() is not None or bpf_maps_held(proc.pid) >= MAPS_WHEN_LOADED
                    for name, proc in procs.items() if runs[name][0]):
                time.sleep(1)
            time.sleep(args.duration)
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} run exited early ({proc.returncode}); see its log")
                    return 1
                got[name] = (status_kb(proc.pid), bpf_maps_held(proc.pid),
                             "libbcc" in Path(f"/proc/{proc.pid}/maps").read_text())
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    for name, label in (("full", "every collector"), ("floor", "no eBPF (floor)"),
                        ("no_anomaly", "every collector but the anomaly model"),
                        ("no_anomaly_floor", "no eBPF, no anomaly model")):
        kb, maps, libbcc = got[name]
        print(f"after {args.duration:g} s, {label}: VmRSS {kb['VmRSS'] / 1024:.1f} MB (anon "
              f"{kb.get('RssAnon', 0) / 1024:.1f}, file {kb.get('RssFile', 0) / 1024:.1f}), "
              f"peak {kb['VmHWM'] / 1024:.1f} MB, {maps} BPF maps held, libbcc mapped: {libbcc}")
    from fluxtui.collectors.bpf_loader import load_program
    from fluxtui.collectors.btf import Btf, kernel_offsets

    offsets = kernel_offsets(Btf.load())
    program = load_program("syscalls.bpf.c", [
        f"-DFX_OFF_THREAD_STATUS={offsets['task_thread_status']}",
        f"-DFX_OFF_TGID={offsets['task_tgid']}"])
    helper_mb = program.helper_maxrss_kb / 1024
    program.close()
    print(f"  bcc helper (compiles syscalls.bpf.c, then exits): peak {helper_mb:.1f} MB")
    ok = True
    for name, base_name, what in (("full", "floor", "every collector on"),
                                  ("no_anomaly", "no_anomaly_floor",
                                   "every collector but the anomaly model")):
        kb, maps, libbcc = got[name]
        rss, base = kb["VmRSS"] / 1024, got[base_name][0]["VmRSS"] / 1024
        good = rss <= GOAL_MB and maps > 0 and not libbcc
        ok = ok and good
        print(f"dashboard RSS, {what}, after {args.duration:g} s: {rss:.1f} MB | floor (no eBPF) "
              f"{base:.1f} MB | ratio {rss / base:.2f} | goal <= {GOAL_MB:g} MB | "
              f"{'PASS' if good else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
