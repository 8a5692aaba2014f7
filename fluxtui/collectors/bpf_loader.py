"""Loading the BPF C in fluxtui/collectors/bpf_programs/ by name.

`load_program` (what the product uses): a helper process compiles and attaches the program with
bcc and hands over its maps and attachments as file descriptors (bpf_helper.py), so the calling
process never imports bcc nor keeps LLVM resident. The result, a `LoadedProgram`, gives the maps
by name (`bpf_maps.BpfMap`) and ring buffers (`ringbuf.RingBuffer`); closing it detaches.

`compile_program`: the same compile in this process, returning a `bcc.BPF` (the helper itself
and benchmarks use it). BCC's compiler is not thread-safe: two compiles at once crash the
process, so every in-process compile goes through it, one at a time.

Sources are package data, found with importlib.resources (a wheel works).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import IO, Any

from fluxtui.collectors.bpf_maps import BpfMap
from fluxtui.collectors.ringbuf import RingBuffer

_COMPILE_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()  # one helper at a time: each briefly holds LLVM (~200 MB)
HELPER_TIMEOUT_S = 300.0


class LoadError(Exception):
    """The program could not be compiled, verified or attached (bcc's message)."""


def program_dir() -> Path:
    return Path(str(resources.files("fluxtui.collectors") / "bpf_programs"))


def program_path(name: str) -> Path:
    return program_dir() / name


def compile_program(name: str, cflags: list[str]) -> Any:
    """A loaded (and, for TRACEPOINT_PROBE, attached) `bcc.BPF` of bpf_programs/`name`, in this
    process; the directory is on the include path for the shared header."""
    from bcc import BPF

    directory = program_dir()
    with _COMPILE_LOCK:
        return BPF(src_file=str(directory / name).encode(),
                   cflags=[f"-I{directory}", *cflags])


class LoadedProgram:
    """A program attached by the helper: its maps by name, the attachment fds that keep it
    attached, and what else the helper was asked for."""

    def __init__(self, name: str, maps: dict[str, BpfMap], links: list[int],
                 extras: dict[str, Any], helper_maxrss_kb: int) -> None:
        self.name = name
        self.maps = maps
        self.links = links
        self.extras = extras
        self.helper_maxrss_kb = helper_maxrss_kb  # the helper's peak resident size
        self._rings: dict[str, RingBuffer] = {}

    def __getitem__(self, name: str) -> BpfMap:
        try:
            return self.maps[name]
        except KeyError:
            raise KeyError(f"program {self.name} has no map {name!r}") from None

    def ring_buffer(self, name: str) -> RingBuffer:
        if name not in self._rings:
            m = self[name]
            self._rings[name] = RingBuffer(m.fd, m.info.max_entries)
        return self._rings[name]

    def map_memory(self) -> int:
        """Bytes of kernel memory charged to the program's maps (their fdinfo memlock)."""
        return sum(m.info.memlock for m in self.maps.values())

    def close(self) -> None:
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()
        for fd in self.links:  # the last reference to each perf event: detaches the program
            with contextlib.suppress(OSError):
                os.close(fd)
        self.links = []
        for m in self.maps.values():
            m.close()


def load_program(name: str, cflags: list[str], syscall_table: bool = False) -> LoadedProgram:
    """bpf_programs/`name` compiled, loaded and attached by a helper process; raises LoadError
    with the reason."""
    from fluxtui.collectors import bpf_helper

    with _LOAD_LOCK, tempfile.TemporaryFile() as errors:
        sock, proc = bpf_helper.spawn(errors)
        fds: list[int] = []
        answered = False
        try:
            sock.settimeout(HELPER_TIMEOUT_S)
            sock.send(json.dumps({"name": name, "cflags": cflags,
                                  "syscall_table": syscall_table}).encode())
            try:
                raw, fds, _flags, _addr = socket.recv_fds(sock, bpf_helper.MAX_MESSAGE, 512)
            except OSError as exc:
                raise LoadError(f"BPF helper failed: {exc}") from None
            if not raw:
                errors.seek(0)
                tail = errors.read()[-2000:].decode("utf-8", "replace").strip()
                raise LoadError(f"BPF helper exited without an answer: {tail or 'no output'}")
            answered = True
            with contextlib.suppress(OSError):
                sock.send(b"k")
            reply = json.loads(raw)
            if not reply.get("ok"):
                raise LoadError(str(reply.get("error") or "unknown error")
                                + _diagnostics(errors))
            names: list[str] = reply["maps"]
            if len(fds) != len(names) + int(reply["links"]):
                raise LoadError(f"BPF helper sent {len(fds)} descriptors, expected "
                                f"{len(names)} maps and {reply['links']} attachments")
            maps = {n: BpfMap(fd, n) for n, fd in zip(names, fds, strict=False)}
            links = fds[len(names):]
            fds = []
            extras = {k: v for k, v in reply.items()
                      if k not in ("ok", "error", "maps", "links")}
        finally:
            for fd in fds:
                os.close(fd)
            sock.close()
            if not answered and proc.poll() is None:
                proc.kill()  # hung in the compiler: nothing was handed over
            maxrss = _reap(proc)
    return LoadedProgram(name, maps, links, extras, maxrss)


def _diagnostics(errors: IO[bytes]) -> str:
    """The compiler's or verifier's error lines the helper printed (the exception bcc raises
    says only that it failed)."""
    errors.seek(0)
    lines = errors.read().decode("utf-8", "replace").splitlines()
    wanted = [line.strip() for line in lines if "error" in line.lower()][:5]
    if not wanted:
        wanted = [line.strip() for line in lines if line.strip()][-5:]
    return (": " + " | ".join(wanted))[:2000] if wanted else ""


def _reap(proc: Any) -> int:
    """Waits for the helper (killed if it hangs); its peak resident size in kB."""
    try:
        _pid, _status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return 0
    proc.returncode = 0
    return int(usage.ru_maxrss)
