#!/bin/bash
# A Python build script that runs shell commands (subprocess with shell=True), like many do.
. "$(dirname "$0")/../lib.sh"
need python3
python3 - <<'PY'
import subprocess
for step in ("mkdir -p out", "echo version=1.0 > out/VERSION", "ls out | wc -l",
             "cat out/VERSION", "rm -rf out"):
    subprocess.run(step, shell=True, check=True)
PY
