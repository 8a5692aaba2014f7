#!/bin/bash
# Edit files next to watched places in the decoy home: ~/.ssh/config and known_hosts beside
# authorized_keys, a note in the home beside .bashrc, a file in ~/.config/systemd (not user/),
# with sed -i and an editor-like save (temporary file, rename).
. "$(dirname "$0")/../lib.sh"
need sed python3
mkdir -p ~/.ssh ~/.config/systemd
printf 'Host build\n    HostName 127.0.0.1\n' >> ~/.ssh/config
sed -i 's/127.0.0.1/localhost/' ~/.ssh/config
echo "localhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZsdXh0dWkgZXZhbHVhdGlvbiBrbm93biBob3N0IDEy" >> ~/.ssh/known_hosts
echo "todo: renew certificates" >> ~/notes.txt
python3 - <<'PY'
import os
path = os.path.expanduser("~/.config/systemd/notes.conf")
tmp = path + ".swp"
with open(tmp, "w") as f:
    f.write("# notes\n")
os.replace(tmp, path)
PY
cat ~/.ssh/config
