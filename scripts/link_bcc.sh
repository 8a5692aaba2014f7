#!/usr/bin/env bash
# bcc is packaged for the system Python only (python3-bpfcc). It is pure Python over libbcc.so,
# so linking its package directory into the virtual environment makes it importable there.
set -euo pipefail
venv=$1
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for candidate in /usr/lib/python3/dist-packages/bcc /usr/lib/python3*/site-packages/bcc; do
    if [ -d "$candidate" ]; then
        [ "$(readlink "$site/bcc" 2>/dev/null)" = "$candidate" ] || ln -sfn "$candidate" "$site/bcc"
        exit 0
    fi
done
echo "setup: bcc (python3-bpfcc) not installed; the eBPF collector will report itself unavailable"
