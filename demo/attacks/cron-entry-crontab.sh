#!/bin/bash
# crontab(1) installs a crontab for a temporary user (T1053.003). The entry never runs (31
# February); the user and its crontab are removed at exit, even when interrupted.
. "$(dirname "$0")/../lib.sh"
need crontab useradd userdel
user=fluxev$$
temp_user "$user"
printf '# fluxtui evaluation\n0 0 31 2 * /bin/true\n' > entry
crontab -u "$user" entry
crontab -l -u "$user" | grep -c true
