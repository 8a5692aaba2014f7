"""The attacker's side of a reverse shell, on loopback: listen on 127.0.0.1:PORT, create READY,
accept one connection, send COMMANDS, print what comes back. Bounded: 20 s to connect, 10 s of
silence ends it. Usage: listener.py PORT READY COMMANDS"""

import socket
import sys

port, ready, commands = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with socket.socket() as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1)
    server.settimeout(20)
    open(ready, "w").close()
    conn, _ = server.accept()
    with conn:
        conn.settimeout(10)
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
