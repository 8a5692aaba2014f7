#!/bin/bash
# Python "encrypts" 300 documents of the work directory and renames each to NAME.locked
# (T1486): what ransomware does to a user's files, on files made for it.
. "$(dirname "$0")/../lib.sh"
need python3
mkdir docs
for i in $(seq 300); do echo "report $i" > "docs/report$i.txt"; done
python3 - <<'PY'
import os
d = "docs"
for name in sorted(os.listdir(d)):
    path = os.path.join(d, name)
    with open(path, "r+b") as f:
        data = bytes(b ^ 0x5A for b in f.read())
        f.seek(0)
        f.write(data)
    os.rename(path, path + ".locked")
print(len(os.listdir(d)), "files locked")
PY
