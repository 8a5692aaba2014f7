"""The BPF loading helper: a short-lived process that compiles a program of bpf_programs/ with
bcc, attaches it, and hands its maps and attachments to the dashboard as file descriptors over a
Unix socket (SCM_RIGHTS), then exits.

Why a process of its own: bcc compiles with LLVM inside the process that imports it, and that
code (about 180 MB) stays resident. The dashboard never imports bcc: it reads and writes the maps
with the bpf() system call (bpf_maps.py) and reads ring buffers by mmap (ringbuf.py).

What keeps a program attached after the helper is gone: bcc attaches a TRACEPOINT_PROBE with a
perf event (perf_event_open + PERF_EVENT_IOC_SET_BPF); the event holds the program, the program
its maps. The dashboard receives those perf event fds and holds them; closing them detaches.
The helper leaves with os._exit so bcc's own clean-up (which disables the events) never runs.

Protocol (one SOCK_SEQPACKET exchange): request {"name", "cflags", "syscall_table"} as JSON;
reply JSON {"ok", "error", "maps": [names], "links": n, "syscall_table"} with the maps' fds in
that order followed by the n attachment fds; then the dashboard's one-byte acknowledgement.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

MAX_MESSAGE = 1 << 20


def _map_fds(bpf: Any) -> dict[str, int]:
    from bcc.libbcc import lib

    lib.bpf_num_tables.restype = ct.c_size_t
    lib.bpf_num_tables.argtypes = [ct.c_void_p]
    lib.bpf_table_name.restype = ct.c_char_p
    lib.bpf_table_name.argtypes = [ct.c_void_p, ct.c_size_t]
    out: dict[str, int] = {}
    for i in range(lib.bpf_num_tables(bpf.module)):
        name = lib.bpf_table_name(bpf.module, i)
        if not name:
            continue
        fd = lib.bpf_table_fd(bpf.module, name)
        if fd >= 0:
            out[name.decode()] = fd
    return out


def _serve(sock: socket.socket) -> None:
    request = json.loads(sock.recv(MAX_MESSAGE))
    reply: dict[str, Any] = {"ok": False, "error": "", "maps": [], "links": 0}
    fds: list[int] = []
    try:
        from fluxtui.collectors.bpf_loader import compile_program

        bpf = compile_program(str(request["name"]), [str(f) for f in request["cflags"]])
        maps = _map_fds(bpf)
        links = [*bpf.tracepoint_fds.values(), *bpf.raw_tracepoint_fds.values()]
        links += [fd for probes in (bpf.kprobe_fds, bpf.uprobe_fds) for fd in probes.values()]
        reply.update(ok=True, maps=list(maps), links=len(links))
        fds = [*maps.values(), *links]
        if request.get("syscall_table"):
            from fluxtui.collectors.syscall_table import SyscallTable

            table = SyscallTable.load()
            reply["syscall_table"] = {"names": table.names, "compat": table.compat}
    except Exception as exc:  # bcc raises bare Exception for compile, verifier, attach errors
        reply.update(ok=False, error=str(exc) or type(exc).__name__, maps=[], links=0)
        fds = []
    socket.send_fds(sock, [json.dumps(reply).encode()], fds)
    sock.recv(1)  # the dashboard holds the fds now (or is gone)


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    try:
        _serve(sock)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # never run bcc's clean-up: it would disable the attached events


def spawn(errors: IO[bytes]) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """Starts a helper writing its messages to `errors`; returns the dashboard's end of its
    socket and the process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # The same fluxtui as the caller's, wherever it was imported from.
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "fluxtui.collectors.bpf_helper",
                                 str(theirs.fileno())], pass_fds=(theirs.fileno(),), env=env,
                                stdin=subprocess.DEVNULL, stdout=errors, stderr=errors)
    finally:
        theirs.close()
    return ours, proc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
