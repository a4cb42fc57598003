#!/bin/sh
# What the official mariadb image's entrypoint does, for busybox sh: the first start creates the
# system tables, sets the root password (root@localhost and root@'%'), creates MARIADB_DATABASE
# and MARIADB_USER, runs the *.sql of /docker-entrypoint-initdb.d, then the server runs as mysql.
# No password ever goes on a command line: SQL reaches the server on stdin.
set -eu

# The client this image ships: `mariadb`, or `mysql` on MySQL-like images.
client=$(command -v mariadb || command -v mysql)

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

# A string as an SQL literal body: backslashes and quotes escaped.
sql_escape() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"
}

if [ "${1#-}" != "$1" ]; then
    set -- mariadbd "$@"
fi

if [ "$1" = mariadbd ] && [ "$(id -u)" = 0 ]; then
    mkdir -p /var/lib/mysql /run/mysqld
    find /var/lib/mysql /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' +
    # busybox su as root needs no setuid bit and execs in place (no extra process).
    exec su mysql -s /bin/sh -c 'exec "$0" "$@"' "$0" "$@"
fi

if [ "$1" = mariadbd ] && [ ! -d /var/lib/mysql/mysql ]; then
    # MySQL's own names, as the official image reads them too.
    if [ -z "${MARIADB_ROOT_PASSWORD:-}${MARIADB_ROOT_PASSWORD_FILE:-}" ]; then
        MARIADB_ROOT_PASSWORD=${MYSQL_ROOT_PASSWORD:-}
        MARIADB_ROOT_PASSWORD_FILE=${MYSQL_ROOT_PASSWORD_FILE:-}
    fi
    file_env MARIADB_ROOT_PASSWORD
    file_env MARIADB_DATABASE
    file_env MARIADB_USER
    file_env MARIADB_PASSWORD
    if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then
        echo "error: database is uninitialized and MARIADB_ROOT_PASSWORD (or _FILE) is not set" >&2
        exit 1
    fi
    mariadb-install-db --datadir=/var/lib/mysql --skip-test-db --skip-name-resolve \
        --auth-root-authentication-method=normal >/dev/null

    # The first start listens on the socket only: nothing outside sees a half-made server.
    mariadbd --skip-networking --skip-log-bin &
    pid=$!
    for _ in $(seq 1 300); do
        if echo 'SELECT 1' | "$client" -uroot >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done

    root=$(sql_escape "$MARIADB_ROOT_PASSWORD")
    health=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    umask 077
    printf '[client]\nuser=healthcheck\npassword=%s\n' "$health" >/var/lib/mysql/.my-healthcheck.cnf
    {
        cat <<SQL
DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');
FLUSH PRIVILEGES;
CREATE USER 'root'@'%' IDENTIFIED BY '$root';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY '$health';
SQL
        if [ -n "$MARIADB_DATABASE" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
        fi
        if [ -n "$MARIADB_USER" ] && [ -n "$MARIADB_PASSWORD" ]; then
            echo "CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY '$(sql_escape "$MARIADB_PASSWORD")';"
            if [ -n "$MARIADB_DATABASE" ]; then
                echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';"
            fi
        fi
        for f in /docker-entrypoint-initdb.d/*.sql; do
            if [ -e "$f" ]; then
                echo "USE \`${MARIADB_DATABASE:-mysql}\`;"
                cat "$f"
            fi
        done
        echo "SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$root');"
        echo "SHUTDOWN;"
    } | "$client" -uroot
    wait "$pid"
    echo "MariaDB init process complete; ready for start up."
fi

exec "$@"
