#!/bin/bash
# A crontab written straight into the cron spool by the shell, no crontab(1) (T1053.003). The
# entry never runs (31 February); the file and the temporary user are removed at exit.
. "$(dirname "$0")/../lib.sh"
need useradd userdel
spool=/var/spool/cron/crontabs
[ -d "$spool" ] || spool=/var/spool/cron
[ -d "$spool" ] || { echo "scenario: needs a cron spool directory" >&2; exit 77; }
user=fluxev$$
temp_user "$user"
protect_file "$spool/$user"
printf '# fluxtui evaluation\n0 0 31 2 * /bin/true\n' > "$spool/$user"
chmod 600 "$spool/$user"
echo "wrote $spool/$user"
