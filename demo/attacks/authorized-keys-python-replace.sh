#!/bin/bash
# Python replaces ~/.ssh/authorized_keys2 of the decoy home through a temporary file and a
# rename, adding a made-up key (T1098.004).
. "$(dirname "$0")/../lib.sh"
need python3
python3 - <<'PY'
import os
d = os.path.expanduser("~/.ssh")
os.makedirs(d, exist_ok=True)
path = os.path.join(d, "authorized_keys2")
old = open(path).read() if os.path.exists(path) else ""
tmp = os.path.join(d, ".tmp-keys")
with open(tmp, "w") as f:
    f.write(old + "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGZsdXh0dWkgZXZhbHVhdGlvbjogbm90IGEgcmVhbCBrZXksIG5vdCBhIHJlYWwga2V5LCBub3QgYSByZWFsIGtleSEh ops@build\n")
os.replace(tmp, path)
print("replaced", path)
PY
