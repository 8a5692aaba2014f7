"""The attacker's side of a bind shell, on loopback: connect to 127.0.0.1:PORT (retrying for at
most 10 s), send COMMANDS, print what comes back (10 s of silence ends it).
Usage: client.py PORT COMMANDS"""

import socket
import sys
import time

port, commands = int(sys.argv[1]), sys.argv[2]
deadline = time.monotonic() + 10
while True:
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("no bind shell to connect to")
        time.sleep(0.05)
with conn:
    conn.sendall(commands.encode() + b"\n")
    received = b""
    try:
        while len(received) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pass
print(received.decode(errors="replace"))
