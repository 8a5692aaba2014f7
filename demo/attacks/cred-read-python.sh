#!/bin/bash
# A Python script reads the decoy ~/.aws/credentials (T1552.001).
. "$(dirname "$0")/../lib.sh"
need python3
python3 - <<'PY'
import os
path = os.path.expanduser("~/.aws/credentials")
try:
    with open(path) as f:
        print(f"read {len(f.read())} bytes of {path}")
except PermissionError:
    print(f"denied: {path}")  # the guard refused: the attempt is what is measured
PY
