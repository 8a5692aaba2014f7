#!/bin/bash
# Writes into the memory of another process with process_vm_writev (T1055).
. "$(dirname "$0")/../lib.sh"
need python3
support python3 "$(dirname "$0")/../helpers/victim.py" "$WORK/victim"
wait_file "$WORK/victim"
python3 - "$WORK/victim" <<'PY'
import ctypes, sys
pid, address = map(int, open(sys.argv[1]).read().split())
libc = ctypes.CDLL(None, use_errno=True)
class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
data = ctypes.create_string_buffer(b"injected")
local = IoVec(ctypes.cast(data, ctypes.c_void_p), 9)
remote = IoVec(address, 9)
libc.process_vm_writev.restype = ctypes.c_ssize_t
written = libc.process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
print("written:", written)
PY
wait "${SUPPORT_PIDS[0]}" || true
