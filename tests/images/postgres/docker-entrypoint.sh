#!/bin/sh
# What the official postgres image's entrypoint does, for busybox sh: first start runs initdb
# with POSTGRES_USER / POSTGRES_PASSWORD(_FILE), creates POSTGRES_DB, runs
# /docker-entrypoint-initdb.d, then the server runs as the postgres user listening on *.
set -eu

# file_env VAR [DEFAULT]: VAR from VAR or from the file named by VAR_FILE, never both.
file_env() {
    var=$1
    file_var="${var}_FILE"
    eval "val=\${$var:-}"
    eval "file_val=\${$file_var:-}"
    if [ -n "$val" ] && [ -n "$file_val" ]; then
        echo "error: both $var and $file_var are set (but are exclusive)" >&2
        exit 1
    fi
    if [ -n "$file_val" ]; then
        val=$(cat "$file_val")
    elif [ -z "$val" ]; then
        val=${2:-}
    fi
    export "$var=$val"
    unset "$file_var"
}

if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    mkdir -p /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    # busybox su as root needs no setuid bit and execs in place (no extra process).
    exec su postgres -s /bin/sh -c 'exec "$0" "$@"' "$0" "$@"
fi

if [ "$1" = postgres ]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
            echo "error: database is uninitialized and superuser password is not specified." >&2
            echo "       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), or POSTGRES_HOST_AUTH_METHOD=trust." >&2
            exit 1
        fi
        printf '%s\n' "$POSTGRES_PASSWORD" |
            initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin ${POSTGRES_INITDB_ARGS:-}
        echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
        printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
        psql_init() {
            psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
        }
        if [ "$POSTGRES_DB" != postgres ]; then
            echo "CREATE DATABASE :\"db\";" | psql_init --dbname postgres --set db="$POSTGRES_DB"
        fi
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
                *.sh) echo "running $f"; . "$f" ;;
                *.sql) echo "running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
                *.sql.gz) echo "running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
                *) if [ -e "$f" ]; then echo "ignoring $f"; fi ;;
            esac
        done
        pg_ctl -D "$PGDATA" -m fast -w stop
        echo "PostgreSQL init process complete; ready for start up."
    fi
    unset POSTGRES_PASSWORD
fi

exec "$@"
