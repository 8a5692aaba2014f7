"""Where a running fluxtui process's memory is: a development tool for issue 13's memory goal.

Runs fluxtui in this process (the same arguments as `python -m fluxtui`: the dashboard, or
--headless) with tracemalloc on, and at each of the given times writes a report to OUT.N.txt:
the resident size by kind of mapping (/proc/self/smaps), what tracemalloc traces (the Python
allocators and numpy's data), the allocation sites and files holding the most, and the live
objects by type (gc). tracemalloc's own bookkeeping roughly doubles the traced size: compare
sites with each other, and take the resident figures from bench_memory.py.

    .venv/bin/python bench/memory_sites.py --at 120 300 --out /tmp/sites -- --headless ...
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import os
import sys
import threading
import time
import tracemalloc
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def smaps_mb() -> dict[str, float]:
    out: dict[str, float] = collections.defaultdict(float)
    kind = "anon"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            name = head[5] if len(head) > 5 else ""
            kind = ("bpf" if "bpf-map" in name else f"file {Path(name).name}"
                    if name.startswith("/") else f"anon {name}".strip())
        elif line.startswith("Rss:"):
            out[kind] += int(line.split()[1]) / 1024
    return out


def allocator_stats(path: Path) -> str:
    """pymalloc's arenas (sys._debugmallocstats, summary) and glibc's malloc_info, as text."""
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    glibc = path.with_suffix(".malloc_info.xml")
    fp = libc.fopen(str(glibc).encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    pymalloc = path.with_suffix(".pymalloc.txt")
    saved = os.dup(2)
    try:
        with pymalloc.open("w") as f:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    text = pymalloc.read_text()
    keep = [line for line in text.splitlines() if line.startswith(("#", "Total"))
            or "arenas" in line or "bytes in" in line]
    return "\n".join(keep[-20:])


SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
        types.MethodType, threading.Thread)


def deep_size(root: object, seen: set[int]) -> tuple[int, int]:
    """Bytes and objects reachable from `root` not already in `seen` (modules, classes,
    functions, threads and what only they reach are left out)."""
    size = count = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, SKIP):
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj, 0)
        count += 1
        stack.extend(gc.get_referents(obj))
    return size, count


def held_by() -> list[str]:
    """The engine's state by component and attribute, largest first (shared objects count
    once, for the first holder walked: the engine's own attributes, then the components')."""
    engines = [obj for obj in gc.get_objects() if type(obj).__name__ == "Engine"]
    if not engines:
        return ["no engine"]
    engine = engines[0]
    seen: set[int] = {id(engine), *map(id, engine.components)}
    rows = []
    holders = [("engine", engine), *((c.name, c) for c in engine.components)]
    for owner, obj in holders:
        for attr, value in list(vars(obj).items()) if hasattr(obj, "__dict__") else []:
            if isinstance(value, (int, float, str, bool)) or value is None:
                continue
            if hasattr(value, "__dict__") and not isinstance(value, SKIP) and owner != "engine":
                for sub, inner in list(vars(value).items()):
                    size, n = deep_size(inner, seen)
                    rows.append((size, n, f"{owner}.{attr}.{sub}"))
                seen.add(id(value))
                continue
            size, n = deep_size(value, seen)
            rows.append((size, n, f"{owner}.{attr}"))
    others = [obj for obj in gc.get_objects()
              if type(obj).__name__ in ("StreamWriter", "HeadlessRunner", "FluxApp")]
    for obj in others:
        for attr, value in list(vars(obj).items()):
            size, n = deep_size(value, seen)
            rows.append((size, n, f"{type(obj).__name__}.{attr}"))
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if names.get(ident) == "memory-sites":
            continue
        size = n = 0
        f: types.FrameType | None = frame
        while f is not None:
            for value in list(f.f_locals.values()):
                more, m = deep_size(value, seen)
                size, n = size + more, n + m
            f = f.f_back
        rows.append((size, n, f"locals of thread {names.get(ident, ident)}"))
    rows.sort(reverse=True)
    return [f"{size / 2**20:8.2f} MB {n:8d} {name}" for size, n, name in rows[:40]]


def report(path: Path, depth: int) -> None:
    traced, peak = tracemalloc.get_traced_memory()
    lines = [f"traced {traced / 2**20:.1f} MB (peak {peak / 2**20:.1f} MB), "
             f"tracemalloc's own {tracemalloc.get_tracemalloc_memory() / 2**20:.1f} MB"]
    maps = smaps_mb()
    lines.append(f"resident {sum(maps.values()):.1f} MB: " + ", ".join(
        f"{name} {mb:.1f}" for name, mb in sorted(maps.items(), key=lambda kv: -kv[1])
        if mb >= 0.3))
    lines.append("\n== allocators\n" + allocator_stats(path))
    if depth > 0:
        lines.extend(traced_sites(depth))
    lines.append("\n== held by (deep sizes, sys.getsizeof)")
    lines.extend(held_by())
    counts = collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())
    lines.append("\n== live objects tracked by gc, by type")
    lines.extend(f"{n:9d} {name}" for name, n in counts.most_common(40))
    path.write_text("\n".join(lines) + "\n")


def traced_sites(depth: int) -> list[str]:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),))
    lines = ["\n== by file"]
    for stat in snapshot.statistics("filename")[:40]:
        lines.append(f"{stat.size / 2**20:8.2f} MB {stat.count:8d} {stat.traceback[0].filename}")
    lines.append("\n== by line")
    for stat in snapshot.statistics("lineno")[:60]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size / 2**20:8.2f} MB {stat.count:8d} {frame.filename}:{frame.lineno}")
    if depth > 1:
        lines.append("\n== by traceback")
        for stat in snapshot.statistics("traceback")[:25]:
            lines.append(f"{stat.size / 2**20:8.2f} MB {stat.count:8d}")
            lines.extend(f"      {line}" for line in stat.traceback.format(limit=depth))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--at", type=float, nargs="+", required=True,
                        help="seconds after start at which to write a report")
    parser.add_argument("--out", required=True, help="reports go to OUT.1.txt, OUT.2.txt, ...")
    parser.add_argument("--depth", type=int, default=1,
                        help="frames kept per allocation (0: no tracemalloc; the allocators' "
                             "figures and the objects by type only)")
    parser.add_argument("--trim", type=float, default=0.0,
                        help="call malloc_trim(0) every this many seconds (0: never)")
    parser.add_argument("fluxtui_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.depth > 0:
        tracemalloc.start(args.depth)
    started = time.monotonic()

    def reports() -> None:
        for n, at in enumerate(sorted(args.at), 1):
            time.sleep(max(0.0, started + at - time.monotonic()))
            report(Path(f"{args.out}.{n}.txt"), args.depth)

    threading.Thread(target=reports, name="memory-sites", daemon=True).start()
    if args.trim > 0:
        def trim() -> None:
            libc = ctypes.CDLL(None)
            while True:
                time.sleep(args.trim)
                libc.malloc_trim(0)

        threading.Thread(target=trim, name="memory-trim", daemon=True).start()
    from fluxtui.cli import main as fluxtui_main

    argv = args.fluxtui_args[1:] if args.fluxtui_args[:1] == ["--"] else args.fluxtui_args
    return fluxtui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
