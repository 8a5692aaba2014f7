"""The dashboard's own CPU at 1 Hz with 2,000 extra processes and every collector on (issue 13),
against `top -d 1 -b` over the same processes and the same seconds.

Three processes run side by side over one window: `top -d 1 -b` (the floor), the headless
stream and the dashboard in tmux, each started with the same configuration (syscall capture,
connections, the guard in monitor mode on a temporary home only, the risk scorer; the anomaly
model runs when one is trained). CPU is user + system time of each process and its children,
from /proc, over the same `--seconds`, after the start-up (BPF compile) is over.

Also printed: how many /proc reads the process collector needed in a steady tick (the evidence
that processes which did not run are not read); each fluxtui process's CPU by thread over the
window (thread names from py-spy when --profile is given); what the stream wrote over the
window (documents per second by dataset) and, for each socket opened in the window, whether
its event named its owner (the event is written in the listing the socket first appears in).
With --socket-probe, a process opens loopback sockets from a thread other than its main one
during the window, twice a second, so that attribution is exercised.

With --profile DIR, after the measured window, both fluxtui processes are sampled with py-spy
for --profile-seconds (bench/profile_summary.py) and the top entries printed: where the CPU
goes, by thread and function. The profile is taken after the window so it cannot change the
figures.

Run as root: .venv/bin/python bench/bench_cpu.py [--processes 2000] [--seconds 30]
             [--profile DIR [--profile-seconds 20]] [--socket-probe]
Bounded: the extra processes are `sleep 600`, killed on exit; every child is killed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.profile_summary import (  # noqa: E402
    cpu_by_thread,
    record,
    summary,
    thread_cpu,
    thread_names,
)
from fluxtui.collectors.processes import ProcessCollector  # noqa: E402
from fluxtui.collectors.procstat import CLOCK_TICKS  # noqa: E402

SOCKET = f"fluxtui-benchcpu-{uuid.uuid4().hex[:8]}"
START_LIMIT_S = 180.0  # a BPF compile on a loaded 2-core machine
SETTLED_S = 10.0


def report(name: str, figure: float, floor: float, goal: str, ok: bool, unit: str) -> bool:
    ratio = figure / floor if floor else float("inf")
    print(f"{name}: {figure:.2f} {unit} | floor {floor:.2f} {unit} | ratio {ratio:.2f} | "
          f"goal {goal} | {'PASS' if ok else 'MISS'}", flush=True)
    return ok


@contextmanager
def extra_processes(count: int):
    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            children.append(subprocess.Popen(["sleep", "600"]))
        yield
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait(timeout=30)


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """CPU of pid and its descendants (threads included), in seconds: utime + stime of each live
    one, and cutime + cstime, the time of the children it has reaped. Without the latter, a
    child that exits within the window (the BPF compiler's helper, a package query) took its
    whole past CPU out of the figure."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLOCK_TICKS


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, "-f", "/dev/null", *args], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def write_config(tmp: Path) -> Path:
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("not a key: a file for the guard to mark\n")
    config = tmp / "config.yml"
    # Every collector on, the guard on a temporary home only and in monitor mode (nothing on
    # this shared machine ever waits for an answer), its state files in the temporary directory.
    config.write_text(
        "general:\n  refresh_interval: 1.0\n"
        "syscalls:\n  enabled: true\n"
        "network:\n  enabled: true\n"
        f"guard:\n  enabled: true\n  mode: monitor\n  homes: [{home}]\n  system_files: []\n"
        f"  rules_file: {tmp}/rules.yml\n  audit_db: {tmp}/audit.db\n"
        f"  state_file: {tmp}/inodes.json\n  journal: false\n"
        f"anomaly:\n  model_path: {tmp}/anomaly.model\n  store_path: {tmp}/windows.db\n")
    config.chmod(0o600)
    return config


def wait_for(predicate, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not happen within {limit_s:.0f} s")


def steady_reads(processes: int) -> None:
    """The collector's own count of stat reads in a steady tick, in this process."""
    collector = ProcessCollector()
    try:
        collector.sample()
        reads, memory_reads, listings = [], [], 0
        for _ in range(5):
            time.sleep(1.0)
            collector.sample()
            reads.append(collector.last.stat_reads)
            memory_reads.append(collector.last.memory_reads)
            listings += collector.last.listing
        listed = collector.last.listed
        held = collector.held_fds()
    finally:
        collector.close()
    print(f"[reads] {listed} processes ({processes} extra); stat+statm re-read per tick: "
          f"{reads}, statm alone (memory rotation): {memory_reads} (the rest: one pread of a "
          f"held schedstat fd each; {held} fds held); /proc listed at {listings} of 5 ticks "
          f"(new processes from the kernel's fork events)", flush=True)


def all_started(stream: Path) -> bool:
    """The stream's last metrics document has every component started (none "starting…")."""
    if not stream.exists():
        return False
    for line in reversed(stream.read_bytes().splitlines()):
        if b'"fluxtui.metrics"' not in line:
            continue
        try:
            collectors = json.loads(line)["fluxtui"]["collectors"]
        except (ValueError, KeyError):
            return False
        return "syscalls" in collectors and not any(
            "starting" in str(c.get("reason", "")) for c in collectors.values())
    return False


def threads(pid: int) -> frozenset[int]:
    try:
        return frozenset(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return frozenset()


def settle(pids: list[int]) -> None:
    """Until the set of threads of every pid has not changed for SETTLED_S (bounded)."""
    deadline = time.monotonic() + START_LIMIT_S
    seen = [threads(p) for p in pids]
    since = time.monotonic()
    while time.monotonic() - since < SETTLED_S and time.monotonic() < deadline:
        time.sleep(0.5)
        now = [threads(p) for p in pids]
        if now != seen:
            seen, since = now, time.monotonic()
    print(f"[cpu] threads settled: {[len(t) for t in seen]} "
          f"({time.monotonic() - since:.0f} s unchanged)", flush=True)


def python_pid(pid: int) -> int:
    """The fluxtui Python process at or below `pid` (a tmux pane runs it under a shell)."""
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if b"fluxtui" in f.read() and os.readlink(f"/proc/{p}/exe").find("python") >= 0:
                    return p
        except OSError:
            continue
    return pid


def profile(pids: dict[str, int], seconds: float, where: Path) -> dict[str, dict[int, str]]:
    """Thread names (py-spy's) of each profiled process, by thread id."""
    where.mkdir(parents=True, exist_ok=True)
    running = {}
    names: dict[str, dict[int, str]] = {}
    for name, pid in pids.items():
        path, target = where / f"{name}.txt", python_pid(pid)
        running[name] = (path, target, thread_cpu(target), time.monotonic(),
                         record(target, seconds, path))
    for name, (path, target, before, start, proc) in running.items():
        _out, err = proc.communicate(timeout=seconds + 60)
        after, span = thread_cpu(target), time.monotonic() - start
        if proc.returncode != 0 or not path.exists():
            print(f"[profile {name}] py-spy failed: {err.decode(errors='replace')[-300:]}",
                  flush=True)
            continue
        names[name] = thread_names(path)
        print(summary(path, title=name), flush=True)
        print(cpu_by_thread(before, after, span, names[name]), flush=True)
    return names


def stream_composition(stream: Path, offset: int, seconds: float) -> str:
    """What the headless process wrote over the window: documents per second by dataset."""
    with open(stream, "rb") as f:
        f.seek(offset if offset <= os.fstat(f.fileno()).st_size else 0)  # rotated meanwhile
        data = f.read()
    by_dataset: dict[str, int] = {}
    owners: dict[str, int] = {}  # sockets opened in the window, by owner status at first sight
    lines = data.splitlines()
    for line in lines:
        try:
            doc = json.loads(line)
            dataset = doc["event"]["dataset"]
        except (ValueError, KeyError):
            dataset = "?"
        by_dataset[dataset] = by_dataset.get(dataset, 0) + 1
        if dataset == "fluxtui.connections":
            conn = doc["fluxtui"]["connection"]
            if conn["event"] in ("opened", "listening") and conn["inode"]:
                owners[conn["owner"]] = owners.get(conn["owner"], 0) + 1
    parts = ", ".join(f"{name} {count / seconds:.1f}" for name, count in
                      sorted(by_dataset.items(), key=lambda kv: -kv[1]))
    attributed = ", ".join(f"{n} {status}" for status, n in sorted(owners.items())) or "none"
    return (f"[stream] {len(lines) / seconds:.1f} documents/s, {len(data) / seconds / 1024:.1f} "
            f"KiB/s over the window; per second by dataset: {parts}\n"
            f"[attribution] sockets opened or listening in the window (inode != 0), by owner "
            f"in the event, i.e. in the listing they first appeared in: {attributed}")


# --socket-probe: loopback sockets opened by a thread other than the main one (the hard case for
# attribution: the main thread's schedstat does not move), two a second, each kept 2 s; bounded
# by the window (the probe is killed with the other children).
SOCKET_PROBE = """
import socket, threading, time
def pair():
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    time.sleep(2.0)
    for s in (server, client, listener):
        s.close()
def run():
    while True:
        threading.Thread(target=pair, daemon=True).start()
        time.sleep(0.5)
threading.Thread(target=run, daemon=True).start()
threading.Event().wait(3600)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--no-tui", action="store_true", help="headless and top only")
    parser.add_argument("--profile", type=Path, help="py-spy both after the window, into DIR")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--socket-probe", action="store_true",
                        help="open loopback sockets from a thread during the window (attribution)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_cpu: needs root (syscall capture, guard, process events)", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory() as tmp_name, extra_processes(args.processes):
        tmp = Path(tmp_name)
        config = write_config(tmp)
        stream = tmp / "stream.json"
        python = sys.executable
        children: list[subprocess.Popen[bytes]] = []
        try:
            headless = subprocess.Popen(
                [python, "-m", "fluxtui", "--headless", "--config", str(config),
                 "--stream-file", str(stream), "--no-journal", "--log", str(tmp / "h.log")],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            children.append(headless)
            tui_pid = None
            if not args.no_tui:
                tmux("new-session", "-d", "-s", "tui", "-x", "160", "-y", "48",
                     f"cd {REPO} && env -u COLUMNS -u LINES {python} -m fluxtui --config "
                     f"{config} --no-journal --log {tmp}/t.log")
                tui_pid = int(tmux("display", "-p", "-t", "tui", "#{pane_pid}").strip())
            # Past start-up: the stream carries the syscall collector running, the TUI shows
            # its table, and both have ticked a few times since.
            # Past start-up: every component has started (a BPF compile runs in a helper
            # process, a child whose CPU would count in the window).
            wait_for(lambda: all_started(stream), START_LIMIT_S, "headless start")
            if tui_pid is not None:
                wait_for(lambda: "PID" in (screen := tmux("capture-pane", "-p", "-t", "tui"))
                         and "starting" not in "".join(screen.splitlines()[:3]),
                         START_LIMIT_S, "dashboard start")
            # Start-up work on threads of its own (verifying the executables the rules name,
            # hashing them: tens of seconds on a loaded machine) is not the steady cost: wait
            # until no thread has come or gone in both processes for SETTLED_S.
            settle([headless.pid] + ([python_pid(tui_pid)] if tui_pid is not None else []))
            top = subprocess.Popen(["top", "-d", "1", "-b"], stdout=subprocess.DEVNULL)
            children.append(top)
            if args.socket_probe:
                children.append(subprocess.Popen([python, "-c", SOCKET_PROBE]))
            time.sleep(2.0)  # top's first full listing is not its steady cost
            measured = {"top": top.pid, "headless": headless.pid}
            if tui_pid is not None:
                measured["tui"] = tui_pid
            pythons = {n: python_pid(p) for n, p in measured.items() if n != "top"}
            threads_before = {n: thread_cpu(p) for n, p in pythons.items()}
            before = {name: cpu_seconds(pid) for name, pid in measured.items()}
            stream_from = stream.stat().st_size
            start = time.monotonic()
            time.sleep(args.seconds)
            after = {name: cpu_seconds(pid) for name, pid in measured.items()}
            span = time.monotonic() - start
            threads_after = {n: thread_cpu(p) for n, p in pythons.items()}
            written = stream_composition(stream, stream_from, span)
            share = {name: 100.0 * (after[name] - before[name]) / span for name in measured}
            screen = tmux("capture-pane", "-p", "-t", "tui") if tui_pid is not None else ""
            names: dict[str, dict[int, str]] = {}
            if args.profile is not None:
                names = profile({n: p for n, p in measured.items() if n != "top"},
                                args.profile_seconds, args.profile)
            for name in pythons:
                print(f"[window {name}]" + cpu_by_thread(
                    threads_before[name], threads_after[name], span, names.get(name, {})),
                    flush=True)
        finally:
            for child in children:
                child.kill()
            for child in children:
                child.wait(timeout=30)
            if not args.no_tui:
                for pid in reversed(descendants(tui_pid)) if tui_pid else ():
                    with suppress(OSError):
                        os.kill(pid, 9)
                subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True,
                               timeout=30)
        listed = sum(1 for name in os.listdir("/proc") if name.isdigit())
        print(f"[cpu] {listed} processes on the machine, {args.processes} extra; "
              f"{span:.1f} s window, 1 Hz", flush=True)
        print(written, flush=True)
        if screen:
            print("[tui] " + screen.splitlines()[0][:150], flush=True)
        floor = share["top"]
        unit = "% of one core"
        results.append(report("dashboard CPU, headless, every collector on", share["headless"],
                              floor, "<= top", share["headless"] <= floor, unit))
        if "tui" in share:
            results.append(report("dashboard CPU, TUI in tmux, every collector on",
                                  share["tui"], floor, "<= top", share["tui"] <= floor, unit))
        steady_reads(args.processes)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
