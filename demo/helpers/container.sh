# Sourced by the container scenarios, after lib.sh. Skips (exit 77) without a container runtime:
# docker with its daemon running. The test image is imported from Debian's busybox-static root
# (no registry is needed). Containers are started under the scenario's own cgroup
# (--cgroup-parent), so that the evaluation tells the scenario's containers from any other.
IMAGE=localhost/fluxtui-test:busybox
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "no container runtime (docker with a running daemon)" >&2
    exit 77
fi
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    [ -x /bin/busybox ] || { echo "no container image and no busybox-static to build it" >&2; exit 77; }
    root=$WORK/rootfs
    mkdir -p "$root/bin" "$root/mnt" "$root/proc" "$root/sys" "$root/dev" "$root/etc" "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in sh true mount nsenter hostname sleep cat unshare ls; do
        ln -sf busybox "$root/bin/$applet"
    done
    tar -C "$root" -c . | docker import - "$IMAGE" >/dev/null
fi
PARENT=$(sed -n 's/^0:://p' /proc/self/cgroup)
# Docker creates the parent in each cgroup v1 hierarchy too (a hybrid machine); those empty
# directories are removed again on exit, up to (never including) each hierarchy's root.
remove_v1_parents() {
    local mnt dir
    while read -r mnt; do
        dir=$mnt$PARENT
        while [ "$dir" != "$mnt" ] && [ "${#dir}" -gt "${#mnt}" ]; do
            rmdir "$dir" 2>/dev/null || break
            dir=$(dirname "$dir")
        done
    done < <(awk '$3 == "cgroup" {print $2}' /proc/self/mounts)
}
trap 'stop_support; remove_v1_parents' EXIT
# container_run ARGS...: docker run --rm under this scenario's cgroup.
container_run() {
    docker run --rm --cgroup-parent "$PARENT" "$@"
}
