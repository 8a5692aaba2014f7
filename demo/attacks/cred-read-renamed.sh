#!/bin/bash
# Variant: a copy of the Python interpreter renamed to look like a kernel thread, run from a
# hidden directory, reads the decoy kube config and AWS keys.
. "$(dirname "$0")/../lib.sh"
need python3
mkdir -p "$WORK/.cache"
cp "$(readlink -f "$(command -v python3)")" "$WORK/.cache/kworker"
"$WORK/.cache/kworker" -c '
import os
for rel in (".kube/config", ".aws/credentials"):
    path = os.path.join(os.environ["HOME"], rel)
    try:
        with open(path, "rb") as f:
            print("read", len(f.read()), "bytes of", path)
    except PermissionError:
        print("denied:", path)
'
