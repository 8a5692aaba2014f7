#!/bin/bash
# Three plain container starts: the runtime (runc) unshares namespaces, mounts and pivots into
# the container's root before the entrypoint runs, which is its job and no escape.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../helpers/container.sh"
for _ in 1 2 3; do
    container_run "$IMAGE" true
done
