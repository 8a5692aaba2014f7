#!/bin/bash
# nsenter joins the namespaces of PID 1 (the classic escape from a privileged container; on a
# host it joins the namespaces it is already in) and runs a command there. Where PID 1's
# namespaces cannot be opened (a sandboxed init), the target is a process this script started
# in new namespaces. (T1611)
. "$(dirname "$0")/../lib.sh"
need nsenter unshare sleep
target=1
if ! [ -r /proc/1/ns/mnt ] || ! readlink /proc/1/ns/mnt >/dev/null 2>&1; then
    support unshare --mount --uts --ipc --net sleep 30
    target=$!
    for _ in $(seq 100); do
        [ "$(readlink "/proc/$target/ns/uts")" != "$(readlink /proc/self/ns/uts)" ] && break
        sleep 0.05
    done
fi
echo "target: pid $target"
nsenter --target "$target" --mount --uts --ipc --net -- hostname
