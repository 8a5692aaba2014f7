#!/bin/bash
# A kernel module load attempt that the kernel must reject: init_module with an image that is
# not a module (no ELF header). Nothing can be loaded. (T1547.006)
. "$(dirname "$0")/../lib.sh"
need python3
[ "$(uname -m)" = x86_64 ] || { echo "scenario: x86_64 syscall numbers" >&2; exit 77; }
python3 - <<'PY'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
image = b"fluxtui evaluation: this is not a kernel module\n" * 4
assert not image.startswith(b"\x7fELF")
rc = libc.syscall(175, image, len(image), b"")  # init_module
print("init_module:", "loaded?!" if rc == 0 else os.strerror(ctypes.get_errno()))
PY
