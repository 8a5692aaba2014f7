#!/bin/bash
# A root process drops to nobody keeping root as its saved uid, then takes uid 0 back: the
# change from a non-root uid to root. (T1548.001)
. "$(dirname "$0")/../lib.sh"
need python3
python3 -c '
import os
os.setresuid(65534, 65534, 0)
os.setresuid(0, 0, 0)
print("uid", os.getuid())
'
