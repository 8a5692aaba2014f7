#!/bin/bash
# Variant: no debugger; Python calls ptrace itself through ctypes, with PTRACE_SEIZE and
# PTRACE_INTERRUPT instead of PTRACE_ATTACH, and reads a word of the victim's memory.
. "$(dirname "$0")/../lib.sh"
need python3 sleep
support sleep 30
victim=$!
sleep 0.2
python3 - "$victim" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_PEEKDATA, PTRACE_DETACH = 0x4206, 0x4207, 2, 17
pid = int(sys.argv[1])
if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
    sys.exit(f"seize failed: {os.strerror(ctypes.get_errno())}")
libc.ptrace(PTRACE_INTERRUPT, pid, None, None)
os.waitpid(pid, 0)
with open(f"/proc/{pid}/maps") as maps:
    start = int(maps.readline().split("-")[0], 16)
word = libc.ptrace(PTRACE_PEEKDATA, pid, ctypes.c_void_p(start), None)
print(f"word at {start:#x}: {word & 0xffffffffffffffff:#x}")
libc.ptrace(PTRACE_DETACH, pid, None, None)
PY
