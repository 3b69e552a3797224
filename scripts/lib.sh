# shellcheck shell=bash
# Settings defined here are used by the scripts that source this file:
# shellcheck disable=SC2034
#
# Shared helpers for scripts/setup.sh and scripts/drop-test-databases.sh.
# Source it; do not run it. It defines functions and settings only and has no
# side effects beyond that, so sourcing it twice is harmless.
#
# Settings (environment, with defaults):
#   POSTURE_PG_HOST=127.0.0.1  POSTURE_PG_PORT=5432  POSTURE_PG_DB=posture
#   POSTURE_REDIS_HOST=127.0.0.1  POSTURE_REDIS_PORT=6379

POSTURE_PG_HOST=${POSTURE_PG_HOST:-127.0.0.1}
POSTURE_PG_PORT=${POSTURE_PG_PORT:-5432}
POSTURE_PG_DB=${POSTURE_PG_DB:-posture}
POSTURE_REDIS_HOST=${POSTURE_REDIS_HOST:-127.0.0.1}
POSTURE_REDIS_PORT=${POSTURE_REDIS_PORT:-6379}

# The repository root, whatever the caller's working directory.
POSTURE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Machine-local state (private database cluster, logs). Git-ignored.
POSTURE_LOCAL_DIR=$POSTURE_ROOT/.local
# A private PostgreSQL cluster, used only when nothing else serves the port.
PG_PRIVATE_DATA=$POSTURE_LOCAL_DIR/pgdata
# Its unix socket and server log. Kept apart from the data directory because
# PostgreSQL insists the data directory is 0700 and holds only its own files.
PG_PRIVATE_RUN=$POSTURE_LOCAL_DIR/pgrun

# Name used in messages; callers may set it before sourcing.
PROG=${PROG:-$(basename "$0" .sh)}

# ---------------------------------------------------------------- messages --

# Progress lines go to stderr and are printed only when the script actually
# changes something (installs, starts), so a run with nothing to do is quiet.
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a command with its output captured; show the output only if it fails.
# Output goes to a file rather than a pipe, so a daemon started by the command
# cannot keep the pipe open and hang us.
run_quiet() {
    local what=$1 log rc=0
    shift
    log=$(mktemp "${TMPDIR:-/tmp}/posture-setup.XXXXXX")
    "$@" >"$log" 2>&1 </dev/null || rc=$?
    if ((rc != 0)); then
        printf '%s: %s failed (exit %d); last output:\n' "$PROG" "$what" "$rc" >&2
        tail -n 40 "$log" | sed 's/^/    /' >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

# wait_until SECONDS COMMAND...: poll COMMAND until it succeeds or the deadline
# passes (bounded, so a service that never comes up fails the script instead
# of hanging it).
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

check_settings() {
    # The database name is spliced into SQL and file names; keep it to a
    # plain identifier so no quoting question ever arises.
    [[ $POSTURE_PG_DB =~ ^[a-z_][a-z0-9_]*$ ]] ||
        die "POSTURE_PG_DB='$POSTURE_PG_DB' must be a lower-case identifier ([a-z_][a-z0-9_]*)"
    local p
    for p in "$POSTURE_PG_PORT" "$POSTURE_REDIS_PORT"; do
        if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
            die "invalid port '$p'"
        fi
    done
}

# Only a service on this machine can be installed or started by us.
is_local_host() {
    case $1 in
    localhost | 127.* | ::1) return 0 ;;
    *) return 1 ;;
    esac
}

# The address a service we start should listen on: the configured host if it
# is a loopback IPv4 address, else 127.0.0.1 (for "localhost"); never a public
# interface.
listen_addr_for() {
    case $1 in
    127.*) printf '%s' "$1" ;;
    ::1) printf '::1' ;;
    *) printf '127.0.0.1' ;;
    esac
}

# Bare TCP probe using bash's /dev/tcp, with a timeout (a filtered port would
# otherwise block for minutes).
tcp_open() {
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# ------------------------------------------------------------------ apt --

APT_UPDATED=${APT_UPDATED:-}

# apt_install PACKAGE...: install Debian packages when root; otherwise print
# the exact command to run and exit, since we cannot do it ourselves.
apt_install() {
    local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $*"
    if ! is_root; then
        die "missing: $*. Install with:  sudo sh -c '$cmd'  and re-run."
    fi
    have apt-get || die "missing: $*, and apt-get is not available to install it"
    say "installing $* with apt-get"
    # Wait for a dpkg lock held by another apt run instead of failing at once.
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
    if [[ -z $APT_UPDATED ]]; then
        run_quiet "apt-get update" "${apt[@]}" update
        APT_UPDATED=1
    fi
    run_quiet "apt-get install $*" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@"
}

# ------------------------------------------------------------- postgres --

# Does a PostgreSQL server answer at host:port? pg_isready speaks the protocol
# (and says "rejecting" while the server starts up); without it, fall back to
# a bare TCP connect.
pg_ready() {
    if have pg_isready; then
        pg_isready -q -h "$POSTURE_PG_HOST" -p "$POSTURE_PG_PORT" -t 3 >/dev/null 2>&1
    else
        tcp_open "$POSTURE_PG_HOST" "$POSTURE_PG_PORT"
    fi
}

# Directory of the PostgreSQL server programs (initdb, pg_ctl, postgres), or
# nothing (and failure) if they are not installed. Debian keeps them off PATH
# in /usr/lib/postgresql/<major>/bin; take the newest major there.
pg_server_bindir() {
    local initdb d found=()
    if initdb=$(command -v initdb) && have pg_ctl; then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && found+=("$d")
    done
    ((${#found[@]} > 0)) || return 1
    printf '%s\n' "${found[@]}" | sort -V | tail -n 1
}

# psql with settings that make it predictable in scripts: no ~/.psqlrc, never
# prompt for a password (fail instead), stop at the first error, quiet,
# unaligned tuples-only output, bounded connection attempts.
PSQL_FLAGS=(-X -w -v ON_ERROR_STOP=1 -qAt)

# How to reach the server as the superuser "postgres"; decided once per run
# by pg_pick_superuser and then reused by as_superuser_psql.
PG_SU_METHOD=${PG_SU_METHOD:-}

# _psql_as METHOD DB [PSQL ARGS...]: run psql as superuser by one METHOD.
#   tcp     - TCP as postgres, no password: works where pg_hba says trust
#             (this kind of dev/CI machine), or with PGPASSWORD/~/.pgpass set.
#   private - the unix socket of our private cluster in .local/pgrun; its
#             pg_hba trusts that socket, which only the cluster's OS owner
#             (and root) can open.
#   peer    - as root: become the postgres OS user and use the default unix
#             socket, where Debian's pg_hba uses peer auth for postgres.
# runuser commands start from / so that the postgres user never trips over a
# working directory it may not read (e.g. a checkout under /root).
_psql_as() {
    local method=$1 db=$2
    shift 2
    case $method in
    tcp)
        PGCONNECT_TIMEOUT=5 psql "${PSQL_FLAGS[@]}" -h "$POSTURE_PG_HOST" -p "$POSTURE_PG_PORT" \
            -U postgres -d "$db" "$@"
        ;;
    private)
        if is_root; then
            (cd / && PGCONNECT_TIMEOUT=5 runuser -u postgres -- psql "${PSQL_FLAGS[@]}" \
                -h "$PG_PRIVATE_RUN" -p "$POSTURE_PG_PORT" -U postgres -d "$db" "$@")
        else
            PGCONNECT_TIMEOUT=5 psql "${PSQL_FLAGS[@]}" -h "$PG_PRIVATE_RUN" -p "$POSTURE_PG_PORT" \
                -U postgres -d "$db" "$@"
        fi
        ;;
    peer)
        (cd / && PGCONNECT_TIMEOUT=5 runuser -u postgres -- psql "${PSQL_FLAGS[@]}" \
            -p "$POSTURE_PG_PORT" -U postgres -d "$db" "$@")
        ;;
    *) die "internal: unknown superuser access method '$method'" ;;
    esac
}

pg_pick_superuser() {
    [[ -n $PG_SU_METHOD ]] && return 0
    have psql || die "psql is missing (Debian package postgresql-client)"
    local m methods=(tcp)
    if is_local_host "$POSTURE_PG_HOST"; then
        [[ -S $PG_PRIVATE_RUN/.s.PGSQL.$POSTURE_PG_PORT ]] && methods+=(private)
        is_root && id -u postgres >/dev/null 2>&1 && methods+=(peer)
    fi
    for m in "${methods[@]}"; do
        if _psql_as "$m" postgres -c 'select 1' >/dev/null 2>&1 </dev/null; then
            PG_SU_METHOD=$m
            return 0
        fi
    done
    die "cannot connect to PostgreSQL at $POSTURE_PG_HOST:$POSTURE_PG_PORT as superuser 'postgres'" \
        "(tried: ${methods[*]}). Run as root on the database machine (peer auth via runuser)," \
        "or provide the password via PGPASSWORD or ~/.pgpass."
}

# as_superuser_psql DB [PSQL ARGS...]: psql as the superuser "postgres" in
# database DB, by whichever method works here. SQL comes from -c/-f or stdin.
as_superuser_psql() {
    pg_pick_superuser
    _psql_as "$PG_SU_METHOD" "$@"
}

# ---------------------------------------------------------------- redis --

# redis_ping HOST PORT: 0 if it answers PING with +PONG; 1 if nothing answers;
# 2 if something answers otherwise (the reply is left in REDIS_REPLY, e.g.
# "-NOAUTH ..." for a password-protected server). Uses /dev/tcp because
# redis-cli may not be installed.
REDIS_REPLY=
redis_ping() {
    # shellcheck disable=SC2016 # $1/$2/$line expand in the inner bash
    REDIS_REPLY=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r -t 2 line <&3 || exit 1
        printf "%s" "$line" | tr -d "\r"
    ' _ "$1" "$2" 2>/dev/null) || true
    [[ $REDIS_REPLY == "+PONG" ]] && return 0
    [[ -z $REDIS_REPLY ]] && return 1
    return 2
}
