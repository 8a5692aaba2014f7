"""A process whose memory another one writes into: holds a buffer, writes "PID ADDRESS" to
READY, and waits (at most 15 s) for the buffer to change. Usage: victim.py READY"""

import ctypes
import os
import sys
import time

buffer = ctypes.create_string_buffer(b"original", 64)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {ctypes.addressof(buffer)}\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
deadline = time.monotonic() + 15
while buffer.value == b"original" and time.monotonic() < deadline:
    time.sleep(0.02)
print("victim buffer:", buffer.value.decode(errors="replace"))
