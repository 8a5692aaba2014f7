"""Resident memory of the dashboard process with every collector on (issue 13).

Runs the product (`fluxtui --headless`, the engine with every component of the dashboard:
syscall capture and risk, the guard, connections with connect tracing, the anomaly model) for
DURATION seconds and reads the process's VmRSS and peak (VmHWM) from /proc/PID/status. The floor
is the same run, side by side, with eBPF off (syscalls.enabled and network.connect_trace false).
The anomaly runs load a real model: fitted here on the 1,912 windows `fluxtui train` recorded on
this machine (tests/fixtures/anomaly), saved 0600 where the run's config points; the model's state
is read back from the run's stream. The same pair runs without the anomaly model too, and the
dashboard itself (the TUI, in a private tmux server at 160x48) runs with every collector on and
with no eBPF: the goal is the dashboard's.
Also shown: where the resident memory is (/proc/PID/smaps: the BPF maps' mmapped pages, i.e. the
ring buffers; files; anonymous memory), whether the dashboard process mapped libbcc, scikit-learn
or scipy (it must not), the peak of the short-lived bcc helper that compiles a program (it exits
after handing the program over), and what an interpreter holds with only the modules imported
(python; + the headless modules; + numpy and the model's modules, imported once a model
loads; + textual for the TUI): the floor under any run. The period's process churn is shown: the
engine's state grows with the processes it follows.

Safety: the guard runs in monitor mode on a temporary home with no system files, every state
file lives in a temporary directory, the stream goes to a temporary file.

    .venv/bin/python bench/bench_memory.py [--duration 600]
Needs root and bcc. Goal: <= 100 MB resident with every collector on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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


def smaps_kb(pid: int) -> dict[str, int]:
    """Rss by kind of mapping: bpf (BPF maps mmapped: the ring buffers), file, anon."""
    out = {"bpf": 0, "file": 0, "anon": 0}
    kind = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            name = head[5] if len(head) > 5 else ""
            kind = "bpf" if "bpf-map" in name else "file" if name.startswith("/") else "anon"
        elif line.startswith("Rss:"):
            out[kind] += int(line.split()[1])
    return out


def mapped_libraries(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name, marker in (("libbcc", "libbcc"), ("scikit-learn", "/sklearn/"),
                                      ("scipy", "/scipy/")) if marker in maps]


def anomaly_state(stream: Path) -> str:
    """The anomaly component's state and detail in the newest metrics document of the stream
    (read backwards in 4 MB steps: with thousands of processes a tick's documents are large)."""
    size = stream.stat().st_size
    end = size
    with stream.open("rb") as f:
        while end > 0:
            start = max(0, end - 4_000_000)
            f.seek(start)
            lines = f.read(end - start + 1_000_000).splitlines()  # overlap: whole lines
            for line in reversed(lines):
                if b'"collectors"' not in line:
                    continue
                try:
                    status = json.loads(line)["fluxtui"]["collectors"]["anomaly"]
                except (ValueError, KeyError, TypeError):
                    continue
                return f"{status['state']}: {status.get('detail') or status.get('reason')}"
            end = start
    return "no status in the stream"


def processes_started() -> int:
    """Processes (and threads) created on this machine since boot (/proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    return 0


def processes_now() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


HEADLESS = "import fluxtui.headless, fluxtui.capabilities.assembly, fluxtui.cli"
MODEL = "import fluxtui.detection.anomaly.modelfile, fluxtui.detection.anomaly.models"
IMPORT_FLOORS = (("python", ""), ("+ the headless modules (no model: no numpy)", HEADLESS),
                 ("+ numpy and the model's modules", f"{HEADLESS}; {MODEL}"),
                 ("+ textual (the TUI)", f"{HEADLESS}; {MODEL}; import fluxtui.tui.app"))


def import_floor_mb(code: str) -> float:
    probe = (f"{code}\nfrom pathlib import Path\nprint(next(int(l.split()[1]) for l in "
             "Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    return int(out.stdout.split()[-1]) / 1024


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


TMUX = ["tmux", "-L", f"fluxtui-bench-memory-{os.getpid()}", "-f", "/dev/null"]


def start_tui(tmp: Path, ebpf: bool, name: str) -> int:
    """The dashboard itself, in a private tmux server (160x48); returns its python's pid."""
    command = (f"cd {REPO} && exec env -u COLUMNS -u LINES {sys.executable} -m fluxtui "
               f"--config {config_for(tmp, ebpf)} --log {tmp / 'log'}")
    subprocess.run([*TMUX, "new-session", "-d", "-s", name, "-x", "160", "-y", "48", command],
                   check=True, timeout=30)
    # exec: the pane's process is the dashboard's python
    return int(subprocess.run([*TMUX, "display-message", "-p", "-t", name, "#{pane_pid}"],
                              capture_output=True, text=True, check=True, timeout=30).stdout)


class Pid:
    """A process started in tmux, with Popen's poll() for the checks below."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        return None if Path(f"/proc/{self.pid}").exists() else 1

    def wait_gone(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def tui_model_state(tmp: Path) -> str:
    log = (tmp / "log").read_text() if (tmp / "log").exists() else ""
    refused = [line for line in log.splitlines() if "anomaly model not used" in line]
    return (f"refused: {refused[-1]}" if refused else
            "running: model trained (loaded: no refusal in its log; the same file loads in "
            "the headless runs)")


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
            "no_anomaly_floor": (False, False), "tui": (True, True), "tui_floor": (False, True)}
    got = {}
    from fluxtui.detection.anomaly.modelfile import save_model
    from tests.anomaly_support import recorded_model

    model = recorded_model()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        procs: dict[str, subprocess.Popen[bytes] | Pid] = {}
        try:
            for name, (ebpf, anomaly) in runs.items():
                (Path(tmp) / name).mkdir()
                if anomaly:
                    save_model(model, Path(tmp) / name / "anomaly.model")
                procs[name] = (Pid(start_tui(Path(tmp) / name, ebpf, name))
                               if name.startswith("tui") else
                               start(Path(tmp) / name, ebpf, args.duration, anomaly))
            # The period starts once every eBPF run holds its programs (the helpers compile
            # one after another; on a loaded machine that takes a while) and every headless
            # run's anomaly component has started (it starts after the capture).
            deadline = time.monotonic() + LOAD_WAIT_S

            def ready(name: str) -> bool:
                proc, (ebpf, anomaly) = procs[name], runs[name]
                if proc.poll() is not None:
                    return True
                if ebpf and bpf_maps_held(proc.pid) < MAPS_WHEN_LOADED:
                    return False
                if not anomaly or name.startswith("tui"):
                    return True
                stream = Path(tmp) / name / "stream.json"
                return stream.exists() and anomaly_state(stream).startswith(("running",
                                                                             "unavailable"))

            while time.monotonic() < deadline and not all(ready(name) for name in procs):
                time.sleep(1)
            forks_before, started = processes_started(), time.monotonic()
            time.sleep(args.duration)
            churn = ((processes_started() - forks_before) / (time.monotonic() - started),
                     processes_now())
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} run exited early ({proc.poll()}); see its log")
                    return 1
                run_dir = Path(tmp) / name
                state = ("off" if not runs[name][1] else tui_model_state(run_dir)
                         if name.startswith("tui") else anomaly_state(run_dir / "stream.json"))
                got[name] = (status_kb(proc.pid), bpf_maps_held(proc.pid),
                             mapped_libraries(proc.pid), smaps_kb(proc.pid), state)
        finally:
            subprocess.run([*TMUX, "kill-server"], capture_output=True, timeout=30)
            # the dashboards end on SIGHUP within their grace (cli.SIGNAL_GRACE_S); wait, so
            # that none still writes its log into the directory being removed
            for proc in procs.values():
                if isinstance(proc, Pid):
                    proc.wait_gone()
            for proc in procs.values():
                if isinstance(proc, subprocess.Popen) and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                if not isinstance(proc, subprocess.Popen):
                    continue
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    for name, label in (("full", "headless, every collector"), ("floor", "headless, no eBPF"),
                        ("no_anomaly", "headless, every collector but the anomaly model"),
                        ("no_anomaly_floor", "headless, no eBPF, no anomaly model"),
                        ("tui", "dashboard (TUI), every collector"),
                        ("tui_floor", "dashboard (TUI), no eBPF")):
        kb, maps, libraries, smaps, model_state = got[name]
        print(f"after {args.duration:g} s, {label}: VmRSS {kb['VmRSS'] / 1024:.1f} MB (anon "
              f"{smaps['anon'] / 1024:.1f}, files {smaps['file'] / 1024:.1f}, BPF maps mmapped "
              f"{smaps['bpf'] / 1024:.1f}), peak {kb['VmHWM'] / 1024:.1f} MB, {maps} BPF maps "
              f"held, mapped: {', '.join(libraries) or 'no libbcc, scikit-learn or scipy'}; "
              f"anomaly model {model_state}")
    print(f"  the machine during the period: {churn[0]:,.0f} processes and threads started "
          f"per second (/proc/stat), {churn[1]:,} processes at the end; the engine's state "
          "grows with both (bench/memory_sites.py shows what holds it)")
    print("  an interpreter with only the modules imported: " + "; ".join(
        f"{label} {import_floor_mb(code):.1f} MB" for label, code in IMPORT_FLOORS))
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
    for name, base_name, what in (("tui", "tui_floor", "dashboard (TUI), every collector on"),
                                  ("full", "floor", "headless, every collector on"),
                                  ("no_anomaly", "no_anomaly_floor",
                                   "headless, every collector but the anomaly model")):
        kb, maps, libraries, _, model_state = got[name]
        rss, base = kb["VmRSS"] / 1024, got[base_name][0]["VmRSS"] / 1024
        loaded = name == "no_anomaly" or model_state.startswith("running: model trained")
        good = rss <= GOAL_MB and maps > 0 and not libraries and loaded
        ok = ok and good
        print(f"RSS, {what}, after {args.duration:g} s: {rss:.1f} MB | floor (no eBPF) "
              f"{base:.1f} MB | ratio {rss / base:.2f} | goal <= {GOAL_MB:g} MB | "
              f"{'PASS' if good else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
