#!/usr/bin/env bash
#
# Make sure PostgreSQL and Redis answer, and that the database and the two
# roles Posture uses exist with the right attributes. Idempotent: run it as
# often as you like; a re-run also repairs drifted role attributes/passwords.
# Quiet when there is nothing to do; prints one summary line at the end.
#
# Works against an already running server (e.g. trust auth on 127.0.0.1), and
# on a fresh Debian 12 machine where it installs and starts what is missing
# (as root) or prints the command to run (as anyone else).
#
# It never builds or runs the Rust binary: migrations are `make run`'s job.
#
# Settings: POSTURE_PG_HOST POSTURE_PG_PORT POSTURE_PG_DB POSTURE_REDIS_HOST
# POSTURE_REDIS_PORT (see scripts/lib.sh for defaults).
#
# A private cluster started here (only when no other server owns the port) is
# stopped with:  pg_ctl -D .local/pgdata stop   (as the postgres user if root;
# Debian keeps pg_ctl in /usr/lib/postgresql/<major>/bin)
set -euo pipefail

PROG=setup
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ------------------------------------------------------------- postgres --

# Start the Debian cluster (pg_lsclusters) configured for our port, if there
# is one. Returns 1 if there is none, so the caller can fall back to a private
# cluster. Only the cluster on $POSTURE_PG_PORT is relevant: starting Debian's
# 5432 cluster would not make, say, 55432 answer.
start_debian_cluster() {
    have pg_lsclusters || return 1
    local ver name port status _rest
    while read -r ver name port status _rest; do
        [[ $port == "$POSTURE_PG_PORT" ]] || continue
        if [[ $status != online* ]]; then
            say "starting Debian PostgreSQL cluster $ver/$name on port $port"
            # --skip-systemctl-redirect: start it directly with pg_ctl, which
            # also works in containers without systemd.
            run_quiet "pg_ctlcluster $ver $name start" \
                pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
        fi
        return 0
    done < <(pg_lsclusters --no-header 2>/dev/null)
    return 1
}

# Create (once) and start a cluster of our own in .local/pgdata, listening on
# loopback only, with its socket in .local/pgrun.
start_private_cluster() {
    local bindir=$1
    # PostgreSQL refuses to run as root, so as root the cluster belongs to the
    # postgres OS user (created by Debian's postgresql packages).
    local as_owner=()
    if is_root; then
        id -u postgres >/dev/null 2>&1 ||
            die "no 'postgres' OS user to own a private cluster (PostgreSQL will not run as root)"
        as_owner=(runuser -u postgres --)
    fi

    local sock=$PG_PRIVATE_RUN/.s.PGSQL.$POSTURE_PG_PORT
    ((${#sock} <= 100)) ||
        die "socket path $sock is too long for a unix socket; use a shorter checkout path"

    mkdir -p "$PG_PRIVATE_DATA" "$PG_PRIVATE_RUN"
    chmod 700 "$PG_PRIVATE_DATA" "$PG_PRIVATE_RUN"
    if is_root; then
        chown postgres: "$PG_PRIVATE_DATA" "$PG_PRIVATE_RUN"
        # The postgres user must be able to reach the checkout; a checkout
        # under a 0700 home directory (e.g. /root) is out of its reach.
        (cd / && runuser -u postgres -- test -w "$PG_PRIVATE_DATA") ||
            die "the postgres OS user cannot write $PG_PRIVATE_DATA (a parent directory is not" \
                "accessible to it); move the checkout or make its parents traversable (chmod o+x)"
    fi

    if [[ ! -s $PG_PRIVATE_DATA/PG_VERSION ]]; then
        say "creating a private PostgreSQL cluster in $PG_PRIVATE_DATA"
        # Superuser "postgres" whatever the OS user. Unix socket: trust (the
        # socket directory and socket are 0700, so only the cluster's owner
        # and root get in). TCP: passwords (scram), like Debian's default.
        # UTF-8 with the C locale: same sorting on every machine.
        (cd / && run_quiet initdb "${as_owner[@]}" "$bindir/initdb" -D "$PG_PRIVATE_DATA" \
            -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --no-locale)
        # Our settings live in posture.conf, rewritten on every start below.
        printf "\n# Written by scripts/setup.sh\ninclude_if_exists 'posture.conf'\n" \
            >>"$PG_PRIVATE_DATA/postgresql.conf"
    fi

    local major
    major=$("$bindir/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
    [[ $(<"$PG_PRIVATE_DATA/PG_VERSION") == "$major" ]] ||
        die "$PG_PRIVATE_DATA was created by PostgreSQL $(<"$PG_PRIVATE_DATA/PG_VERSION"), but the" \
            "server here is $major; remove the directory (losing its data) to recreate it"

    # Running already, yet not answering on our port (checked before we got
    # here): most likely started earlier with another POSTURE_PG_PORT.
    if (cd / && "${as_owner[@]}" "$bindir/pg_ctl" -D "$PG_PRIVATE_DATA" status >/dev/null 2>&1); then
        die "the private cluster in $PG_PRIVATE_DATA is already running but does not answer on" \
            "$POSTURE_PG_HOST:$POSTURE_PG_PORT (started with another port?); stop it with:" \
            "${as_owner[*]} $bindir/pg_ctl -D $PG_PRIVATE_DATA stop"
    fi

    # Rewritten each start so a changed POSTURE_PG_PORT takes effect.
    # Single quotes in paths are doubled for the config-file syntax.
    local conf=$PG_PRIVATE_DATA/posture.conf
    {
        echo "# Written by scripts/setup.sh on every start; edits are lost."
        echo "listen_addresses = '$(listen_addr_for "$POSTURE_PG_HOST")'"
        echo "port = $POSTURE_PG_PORT"
        echo "unix_socket_directories = '${PG_PRIVATE_RUN//\'/\'\'}'"
        echo "unix_socket_permissions = 0700"
    } >"$conf"
    if is_root; then chown postgres: "$conf"; fi

    say "starting the private PostgreSQL cluster on $POSTURE_PG_HOST:$POSTURE_PG_PORT"
    (cd / && run_quiet "pg_ctl start (log: $PG_PRIVATE_RUN/postgres.log)" "${as_owner[@]}" \
        "$bindir/pg_ctl" -D "$PG_PRIVATE_DATA" -l "$PG_PRIVATE_RUN/postgres.log" -w -t 30 start)
}

ensure_postgres_running() {
    pg_ready && return 0

    is_local_host "$POSTURE_PG_HOST" ||
        die "no PostgreSQL answers at $POSTURE_PG_HOST:$POSTURE_PG_PORT, and it is not this machine; start it there"

    local bindir
    if ! bindir=$(pg_server_bindir); then
        apt_install postgresql
        bindir=$(pg_server_bindir) || die "apt-get installed postgresql, but no server programs were found"
        # Debian's package creates cluster 15/main on 5432 and may have
        # started it already.
        pg_ready && return 0
    fi

    start_debian_cluster || start_private_cluster "$bindir"

    wait_until 30 pg_ready ||
        die "PostgreSQL did not answer on $POSTURE_PG_HOST:$POSTURE_PG_PORT within 30 s" \
            "(check the server log, listen_addresses and port)"
}

ensure_psql() {
    have psql || apt_install postgresql-client
    have psql || die "psql is still missing after installing postgresql-client"
}

# Roles are a property of the cluster, not of the schema: they are created
# here, never in migrations.
#   posture_owner: owns the database and every table; runs migrations, the
#     `posture admin` commands and `demo`; creates the per-test databases.
#   posture_app: what the server connects as; subject to row-level security.
ensure_roles() {
    # CREATE ROLE has no IF NOT EXISTS: check pg_roles, and still catch the
    # error a concurrent run would cause (duplicate_object, or unique_violation
    # when both inserts race on the catalog index). The attributes and
    # passwords are then always (re)applied with ALTER ROLE, so a re-run
    # repairs drift. Passwords are stored as SCRAM even if the server's
    # default were md5.
    as_superuser_psql postgres <<'SQL' || die "could not create or update the roles"
SET client_min_messages = warning;
BEGIN;
-- Serialise with concurrent setup runs: concurrent ALTER ROLE / GRANT on the
-- same catalog row fail with "tuple concurrently updated".
DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('posture-setup')); END $$;
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['posture_owner', 'posture_app'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by a concurrent run
            END;
        END IF;
    END LOOP;
END
$$;
SET password_encryption = 'scram-sha-256';
ALTER ROLE posture_owner WITH LOGIN NOSUPERUSER CREATEDB BYPASSRLS NOCREATEROLE NOREPLICATION
    PASSWORD 'posture_owner';
ALTER ROLE posture_app WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD 'posture_app';
-- The server's role must never hold a query or an idle transaction for long.
ALTER ROLE posture_app SET statement_timeout = '5s';
ALTER ROLE posture_app SET idle_in_transaction_session_timeout = '10s';
COMMIT;
SQL
}

ensure_database() {
    local db=$POSTURE_PG_DB exists err

    # CREATE DATABASE cannot run inside a DO block (nor any transaction), so
    # check pg_database first. template0 + explicit UTF8/C: a Debian cluster
    # created without a locale in the environment defaults to SQL_ASCII.
    exists=$(as_superuser_psql postgres -v db="$db" <<'SQL'
SELECT 1 FROM pg_database WHERE datname = :'db';
SQL
    )
    if [[ -z $exists ]]; then
        say "creating database $db"
        if ! err=$(as_superuser_psql postgres -v db="$db" 2>&1 <<'SQL'
CREATE DATABASE :"db" OWNER posture_owner TEMPLATE template0 ENCODING 'UTF8'
    LC_COLLATE 'C' LC_CTYPE 'C';
SQL
        ); then
            # Lost a race with a concurrent run? Then the database is there.
            exists=$(as_superuser_psql postgres -v db="$db" <<'SQL'
SELECT 1 FROM pg_database WHERE datname = :'db';
SQL
            )
            [[ -n $exists ]] || die "could not create database $db: $err"
        fi
    fi

    # Always (re)applied, so an existing database is brought into line too.
    as_superuser_psql postgres -v db="$db" <<'SQL' || die "could not set up database $db"
SET client_min_messages = warning;
BEGIN;
DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('posture-setup')); END $$;
ALTER DATABASE :"db" OWNER TO posture_owner;
GRANT CONNECT ON DATABASE :"db" TO posture_app;
COMMIT;
SQL
    # Inside the database: posture_owner owns schema public so migrations can
    # create objects there and grant on them; posture_app may look up objects
    # in it (table privileges are granted by the migrations).
    as_superuser_psql "$db" <<'SQL' || die "could not set up schema public in database $db"
SET client_min_messages = warning;
BEGIN;
DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('posture-setup')); END $$;
ALTER SCHEMA public OWNER TO posture_owner;
GRANT USAGE ON SCHEMA public TO posture_app;
COMMIT;
SQL
}

# ---------------------------------------------------------------- redis --

ensure_redis() {
    local host=$POSTURE_REDIS_HOST port=$POSTURE_REDIS_PORT rc=0
    redis_ping "$host" "$port" || rc=$?
    case $rc in
    0) return 0 ;;
    2) die "something at $host:$port answered '$REDIS_REPLY' instead of +PONG" \
        "(a password-protected Redis, or not Redis at all?)" ;;
    esac

    is_local_host "$host" ||
        die "no Redis answers at $host:$port, and it is not this machine; start it there"

    if ! have redis-server; then
        apt_install redis-server
        # Debian's package may have started its own server on 6379.
        redis_ping "$host" "$port" && return 0
    fi

    say "starting redis-server on $host:$port"
    mkdir -p "$POSTURE_LOCAL_DIR"
    # A throwaway cache: nothing is persisted (--save "" --appendonly no);
    # loopback only; log and pid file under .local for when it misbehaves.
    run_quiet "redis-server start" redis-server --daemonize yes \
        --bind "$(listen_addr_for "$host")" --port "$port" --save "" --appendonly no \
        --dir "$POSTURE_LOCAL_DIR" --logfile "$POSTURE_LOCAL_DIR/redis-$port.log" \
        --pidfile "$POSTURE_LOCAL_DIR/redis-$port.pid"
    wait_until 30 redis_ping "$host" "$port" ||
        die "redis-server did not answer PING on $host:$port within 30 s" \
            "(log: $POSTURE_LOCAL_DIR/redis-$port.log)"
}

# ------------------------------------------------------------------ main --

# True when the roles and the database are already as ensure_roles and
# ensure_database leave them, checked by logging in as the roles themselves.
# Then no superuser access is needed, so a developer without root (after one
# `sudo bash scripts/setup.sh`) can run the README's commands.
roles_and_database_ready() {
    local owner_ok app_ok
    owner_ok=$(PGPASSWORD=posture_owner PGCONNECT_TIMEOUT=5 psql "${PSQL_FLAGS[@]}" \
        -h "$POSTURE_PG_HOST" -p "$POSTURE_PG_PORT" -U posture_owner -d "$POSTURE_PG_DB" -c \
        "SELECT r.rolcreatedb AND r.rolbypassrls AND NOT r.rolsuper
                AND d.datdba = r.oid AND pg_encoding_to_char(d.encoding) = 'UTF8'
         FROM pg_roles r, pg_database d
         WHERE r.rolname = current_user AND d.datname = current_database()" 2>/dev/null) || return 1
    app_ok=$(PGPASSWORD=posture_app PGCONNECT_TIMEOUT=5 psql "${PSQL_FLAGS[@]}" \
        -h "$POSTURE_PG_HOST" -p "$POSTURE_PG_PORT" -U posture_app -d "$POSTURE_PG_DB" -c \
        "SELECT NOT rolsuper AND NOT rolbypassrls AND NOT rolcreatedb
                AND current_setting('statement_timeout') <> '0'
                AND current_setting('idle_in_transaction_session_timeout') <> '0'
         FROM pg_roles WHERE rolname = current_user" 2>/dev/null) || return 1
    [[ $owner_ok == t && $app_ok == t ]]
}

check_settings
ensure_postgres_running
ensure_psql
if ! roles_and_database_ready; then
    ensure_roles
    ensure_database
fi
ensure_redis

printf 'setup: postgres %s:%s db=%s ok; redis %s:%s ok\n' \
    "$POSTURE_PG_HOST" "$POSTURE_PG_PORT" "$POSTURE_PG_DB" "$POSTURE_REDIS_HOST" "$POSTURE_REDIS_PORT"
