#!/bin/bash
# Python writes a user unit and enables it by hand (a symlink in default.target.wants), in the
# decoy home (T1543.002).
. "$(dirname "$0")/../lib.sh"
need python3
python3 - <<'PY'
import os
units = os.path.expanduser("~/.config/systemd/user")
wants = os.path.join(units, "default.target.wants")
os.makedirs(units, exist_ok=True)
unit = os.path.join(units, "dbus-broker-helper.service")
with open(unit, "w") as f:
    f.write("[Service]\nExecStart=/usr/bin/python3 -c 'import time; time.sleep(1)'\n"
            "[Install]\nWantedBy=default.target\n")
os.makedirs(wants, exist_ok=True)
os.symlink(unit, os.path.join(wants, "dbus-broker-helper.service"))
print("enabled", unit)
PY
