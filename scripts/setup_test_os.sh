#!/usr/bin/env bash
# OS set-up for `make test` and `make bench`: the tools that only tests and benchmarks use, each
# listed with the tests that need it. `make run` never installs these (see scripts/setup_os.sh).
set -euo pipefail
here=$(dirname "$0")
bash "$here/setup_os.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: not root, skipping test packages (kernel tests will skip)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no apt-get here; install the packages listed in scripts/setup_test_os.sh by hand"
    exit 0
fi

test_only=(
    gcc libc6-dev      # tests/test_syscalls_bpf.py, test_guard_identity.py, bench/*.c: workloads in C
    strace             # test_syscalls_bpf.py (exact counts), test_guard_identity.py, test_guard_enforce.py
    tmux               # tests/test_e2e_tmux.py: the real dashboard in a terminal
    git                # tests/test_guard_enforce.py: a real program reading a protected file
    openssh-client     # tests/guard_support.py: ssh-keygen, a packaged program the guard verifies
    iproute2           # bench/bench_connections.py: `ss` is the floor the benchmark compares with
    prometheus         # tests/test_prometheus_server.py: a real Prometheus scrapes fluxtui
    systemd            # tests/test_service_unit.py: systemd-analyze verify / security --offline
    gdb curl perl util-linux procps  # demo/ scenarios of `fluxtui evaluate` (tests/test_evaluation_*.py)
    auditd             # tests/test_audit_kernel.py: auditctl -l (rules left) and an auditd that must keep its records
    # tests/test_containers_runtime.py and the container scenarios of demo/: a real Docker and
    # Podman; busybox-static is the root file system of the test image (imported, no registry).
    # The tests start dockerd when it is not running (tests/container_support.py).
    docker.io podman busybox-static
    cron passwd        # demo/attacks/cron-entry-*.sh: crontab(1), useradd/userdel for a temporary user
    chromium           # tests/test_serve.py: the served dashboard in a headless browser
)
# More test-only tools go here, each with the test that uses it, when such a test lands:
# openssh-server (a login workload).
bash "$here/apt_install.sh" "${test_only[@]}"

# Debian enables the packaged Prometheus service; tests start their own on loopback.
if [ -d /run/systemd/system ] && systemctl is-enabled prometheus >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
exit 0
