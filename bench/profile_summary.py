"""py-spy profiles of a running fluxtui, summarised: where its CPU goes, by thread and function.

`record(pid, seconds, path)` samples a process with py-spy (`--nonblocking`: the process is not
paused, so the profile barely changes what it measures) into py-spy's raw format, one line per
distinct stack: `thread (TID): NAME;frame;frame;... COUNT`, idle threads left out, so a sample
is a moment the thread was on a CPU or runnable. `summary(path)` prints the share of samples per
thread, the functions with the most samples on top of the stack (self) and those most often
anywhere in it (inclusive), each as a share of all samples.

Run alone: .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 15]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")
_THREAD = re.compile(r"^thread \(\d+\): ?([^;]*)$")
_THREAD_ID = re.compile(r"^thread \((\d+)\): ?([^;]*);")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def py_spy() -> str | None:
    found = PY_SPY if PY_SPY.exists() else shutil.which("py-spy")
    return str(found) if found else None


def record(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes]:
    """Starts py-spy on `pid` for `seconds`; the caller waits for the returned process."""
    tool = py_spy()
    if tool is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[dev]')")
    return subprocess.Popen(
        [tool, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--format", "raw", "--output", str(path), "--threads", "--function", "--nonblocking",
         "--rate", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of `pid`, from /proc/PID/task/TID/stat."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def thread_names(path: Path) -> dict[int, str]:
    """Thread id -> Python thread name, as py-spy wrote them."""
    names = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _THREAD_ID.match(line)
        if match:
            names[int(match.group(1))] = match.group(2) or "?"
    return names


def cpu_by_thread(before: dict[int, float], after: dict[int, float], seconds: float,
                  names: dict[int, str]) -> str:
    """The measured CPU of each thread over the window, in % of one core, busiest first:
    py-spy's samples also count threads that were runnable but waiting for a CPU."""
    used: dict[str, float] = {}
    for tid, end in after.items():
        name = names.get(tid, f"tid {tid}")
        used[name] = used.get(name, 0.0) + end - before.get(tid, 0.0)
    total = sum(used.values())
    parts = [f"{name} {100 * cpu / seconds:.1f}%"
             for name, cpu in sorted(used.items(), key=lambda kv: -kv[1]) if cpu > 0]
    return f"  CPU by thread (/proc): total {100 * total / seconds:.1f}% of one core: " + \
        ", ".join(parts)


def _short(frame: str) -> str:
    """`name (path:line)` -> `name (file.py)`; py-spy already shortens site-packages paths."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    return f"{name} ({file})" if file else name


def parse(path: Path) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        match = _THREAD.match(frames[0])
        if match:
            threads[match.group(1) or "?"] += count
            frames = frames[1:]
        if not frames:
            continue
        total += count
        names = [_short(f) for f in frames]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    return threads, own, inclusive, total


def summary(path: Path, top: int = 15, title: str = "") -> str:
    threads, own, inclusive, total = parse(path)
    if not total:
        return f"[profile {title}] no samples in {path}"
    lines = [f"[profile {title}] {total} samples at 100 Hz, idle threads left out ({path})"]
    lines.append("  by thread: " + ", ".join(
        f"{name} {100 * n / total:.0f}%" for name, n in threads.most_common(6)))
    lines.append("  self (top of the stack):")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive (fluxtui's own functions):")
    ours = [(name, n) for name, n in inclusive.most_common()
            if "fluxtui/" in name]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in ours[:top]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summary(args.profile, args.top, args.profile.stem))
    return 0


if __name__ == "__main__":
    sys.exit(main())
