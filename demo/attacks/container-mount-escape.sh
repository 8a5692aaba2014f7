#!/bin/bash
# A container that lives a fraction of a second mounts a file system: the first step of the
# mount-based escapes of a container given CAP_SYS_ADMIN (mount the host's disk, a cgroup v1
# hierarchy for its release_agent). (T1611)
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../helpers/container.sh"
container_run --cap-add SYS_ADMIN --security-opt seccomp=unconfined "$IMAGE" \
    sh -c 'mount -t tmpfs none /mnt && echo mounted'
