#!/bin/bash
# A systemd user unit appears in the decoy home's ~/.config/systemd/user, a directory made just
# now (T1543.002). Nothing starts it: the decoy home is no one's.
. "$(dirname "$0")/../lib.sh"
mkdir -p ~/.config/systemd/user
cat > ~/.config/systemd/user/session-helper.service <<UNIT
[Unit]
Description=Session helper
[Service]
ExecStart=/bin/sh -c 'exec /dev/shm/.helper'
Restart=always
[Install]
WantedBy=default.target
UNIT
ls ~/.config/systemd/user
