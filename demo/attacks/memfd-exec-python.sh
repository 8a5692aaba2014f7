#!/bin/bash
# A program copied into an anonymous memory file and executed from there (fexecve, T1620).
. "$(dirname "$0")/../lib.sh"
need python3
python3 - <<'PY'
import os
fd = os.memfd_create("payload", 0)
with open("/bin/true", "rb") as src:
    data = src.read()
while data:
    data = data[os.write(fd, data):]
os.execve(fd, ["payload"], {})
PY
