#!/bin/bash
# Variant: no nsenter; Python calls setns(2) through ctypes to join the UTS and network
# namespaces of a process the script started in new namespaces, then runs hostname there.
. "$(dirname "$0")/../lib.sh"
need python3 unshare sleep
support unshare --uts --net sleep 30
target=$!
for _ in $(seq 100); do
    [ "$(readlink "/proc/$target/ns/uts")" != "$(readlink /proc/self/ns/uts)" ] && break
    sleep 0.05
done
python3 - "$target" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUTS, CLONE_NEWNET = 0x04000000, 0x40000000
pid = sys.argv[1]
for ns, flag in (("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET)):
    fd = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY)
    if libc.setns(fd, flag) != 0:
        sys.exit(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)
os.execv("/bin/hostname", ["hostname"])
PY
