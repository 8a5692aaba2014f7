#!/usr/bin/env bash
# OS set-up for running fluxtui (`make run`): only what the product needs on the user's machine.
# Packages that only the tests or benchmarks use are installed by scripts/setup_test_os.sh.
# Idempotent: a few quick checks when nothing is missing. Without root it does nothing: fluxtui
# then runs in passive mode.
set -euo pipefail
here=$(dirname "$0")

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: not root, skipping OS packages and kernel set-up (fluxtui will run passive)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no apt-get here; install python3-venv, python3-bpfcc (bcc) and kernel headers by hand"
    exit 0
fi

kernel=$(uname -r)
# python3-venv: the virtual environment; python3-bpfcc: bcc, which compiles and loads the eBPF
# programs (it brings its own clang); the kernel headers: bcc compiles against them.
product=(python3-venv python3-bpfcc)
wanted=("${product[@]}")
# Prefer the running kernel's own headers package; fall back to the distribution's meta package.
if [ ! -e "/lib/modules/$kernel/build/include" ]; then
    if apt-cache show "linux-headers-$kernel" >/dev/null 2>&1; then
        wanted+=("linux-headers-$kernel")
    elif grep -qi ubuntu /etc/os-release; then
        wanted+=(linux-headers-generic)
    else
        wanted+=(linux-headers-amd64)
    fi
fi

# A headers package the running kernel has no candidate for must not stop the rest.
bash "$here/apt_install.sh" "${wanted[@]}" || bash "$here/apt_install.sh" "${product[@]}"

# The running kernel may have no headers package of its own (custom VM kernels): link the
# distribution's newest headers as its build (arch) and source (common) trees.
if [ ! -e "/lib/modules/$kernel/build/include" ]; then
    arch_dir=$(ls -d /usr/src/linux-headers-*-amd64 /usr/src/linux-headers-*-generic 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$arch_dir" ]; then
        common_dir="${arch_dir%-amd64}-common"
        [ -d "$common_dir" ] || common_dir="$arch_dir"
        mkdir -p "/lib/modules/$kernel"
        ln -sfn "$arch_dir" "/lib/modules/$kernel/build"
        ln -sfn "$common_dir" "/lib/modules/$kernel/source"
        echo "setup: linked $arch_dir as the headers of kernel $kernel"
    else
        echo "setup: no kernel headers found; the eBPF collector will report itself unavailable"
    fi
fi

# BCC attaches tracepoints through tracefs.
if [ ! -e /sys/kernel/tracing/events ] && [ -d /sys/kernel/tracing ]; then
    mount -t tracefs nodev /sys/kernel/tracing && echo "setup: mounted tracefs"
fi
exit 0
