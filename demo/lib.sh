# Sourced by every scenario script in demo/. The scripts run under `fluxtui evaluate` (and the
# demo mode), which set the environment below; they refuse to run anywhere else, so a scenario
# can never touch a real home's credentials.
#
#   HOME                 a decoy home made by fluxtui (it holds the marker .fluxtui-decoy)
#   FLUX_WORK            this scenario's own temporary directory (also the working directory)
#   FLUX_SHM, FLUX_VARTMP  this scenario's own directories under /dev/shm and /var/tmp
#   FLUX_PORT            a free TCP port on 127.0.0.1 for this scenario
#   FLUX_SUPPORT_PROCS   cgroup.procs of the scenario's "support" cgroup (optional): helpers
#                        started with `support` (listeners, servers, victims) go there, so that
#                        the evaluation tells the actor apart from the stage it acts on
#   FLUX_PYTHON          the Python that runs fluxtui (has pytest), for the benign pytest run
#   FLUX_RESTORE_ROOT    where restore markers go (default /var/lib/fluxtui/eval-restore; tests)
#
# Exit codes: 0 the scenario ran (an attack counts as run when it was attempted, even if the
# guard or the kernel refused it), 77 a tool it needs is missing, anything else a failure.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

die() { echo "scenario: $*" >&2; exit 1; }

[ -f "${HOME:-/nonexistent}/.fluxtui-decoy" ] \
    || die "HOME is not a fluxtui decoy home: run scenarios through 'fluxtui evaluate'"
for var in FLUX_WORK FLUX_SHM FLUX_VARTMP FLUX_PORT; do
    [ -n "${!var:-}" ] || die "$var is not set: run scenarios through 'fluxtui evaluate'"
done
WORK=$FLUX_WORK
PORT=$FLUX_PORT
cd "$WORK"

# need TOOL...: exit 77 (skipped) unless every tool is on PATH.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "scenario: needs $tool" >&2; exit 77; }
    done
}

# support CMD ARGS...: start a helper in the background, in the support cgroup when there is
# one; its pid is in $! afterwards. Helpers are killed on exit (and by fluxtui in any case).
SUPPORT_PIDS=()
support() {
    (
        if [ -n "${FLUX_SUPPORT_PROCS:-}" ]; then echo "$BASHPID" > "$FLUX_SUPPORT_PROCS"; fi
        exec "$@"
    ) &
    SUPPORT_PIDS+=("$!")
}
stop_support() {
    local pid
    for pid in "${SUPPORT_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SUPPORT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SUPPORT_PIDS=()
}
trap stop_support EXIT

# wait_file PATH: wait (at most 10 s) until PATH exists.
wait_file() {
    local i
    for i in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.05; done
    die "timed out waiting for $1"
}

# wait_port PORT: wait (at most 10 s) until something listens on 127.0.0.1:PORT.
wait_port() {
    local i
    for i in $(seq 200); do
        if : 2>/dev/null <>"/dev/tcp/127.0.0.1/$1"; then return 0; fi
        sleep 0.05
    done
    die "timed out waiting for a listener on 127.0.0.1:$1"
}

# --- changes outside the sandbox, always undone ---------------------------------------------
# A scenario that must touch a system file, add a user or install a package records it first
# in a marker under $RESTORE_ROOT (its exact bytes, mode and owner, or that it did not exist);
# the EXIT trap undoes it, and when the script is killed before that, fluxtui does it after
# the scenario and at the start of every run (fluxtui/evaluation/restore.py).
RESTORE_ROOT=${FLUX_RESTORE_ROOT:-/var/lib/fluxtui/eval-restore}
RESTORE_MARKERS=()

_marker() {
    mkdir -p "$RESTORE_ROOT"
    chmod 700 "$RESTORE_ROOT"
    mktemp -d "$RESTORE_ROOT/$$.XXXXXX"
}

# protect_file PATH: PATH is restored byte for byte (or removed, if it did not exist).
protect_file() {
    local dir
    dir=$(_marker)
    printf '%s' "$1" > "$dir/path"
    if [ -e "$1" ]; then cp -a -- "$1" "$dir/backup"; else : > "$dir/absent"; fi
    echo $$ > "$dir/owner"  # last: a marker without an owner changed nothing yet
    RESTORE_MARKERS+=("$dir")
}

# temp_user NAME: add a user without a home or a log-in shell, removed (with its crontab).
temp_user() {
    local dir
    dir=$(_marker)
    printf '%s\n' "$1" > "$dir/user"
    echo $$ > "$dir/owner"
    RESTORE_MARKERS+=("$dir")
    useradd --system --no-create-home --shell /usr/sbin/nologin "$1"
}

# temp_package NAME: a package about to be installed, purged at the end.
temp_package() {
    local dir
    dir=$(_marker)
    printf '%s\n' "$1" > "$dir/package"
    echo $$ > "$dir/owner"
    RESTORE_MARKERS+=("$dir")
}

_restore_one() {
    local dir=$1 path
    if [ -f "$dir/path" ]; then
        path=$(cat "$dir/path")
        if [ -e "$dir/absent" ]; then rm -f -- "$path"
        elif [ -f "$dir/backup" ]; then cp -a -- "$dir/backup" "$path"; fi
    fi
    if [ -f "$dir/package" ]; then dpkg --purge "$(cat "$dir/package")" >/dev/null 2>&1 || true; fi
    if [ -f "$dir/user" ]; then
        crontab -r -u "$(cat "$dir/user")" 2>/dev/null || true
        userdel "$(cat "$dir/user")" 2>/dev/null || true
    fi
    rm -rf -- "$dir"
}

restore_all() {
    local i
    for ((i = ${#RESTORE_MARKERS[@]} - 1; i >= 0; i--)); do
        _restore_one "${RESTORE_MARKERS[$i]}"
    done
    RESTORE_MARKERS=()
}
trap 'restore_all; stop_support' EXIT
trap 'exit 130' INT TERM
