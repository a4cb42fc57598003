#!/bin/sh
# What the official redis image's entrypoint does, for busybox sh: /data belongs to redis and the
# server runs as redis. REDIS_PASSWORD, when set, goes into a 0600 config file the server reads
# first, so it never appears on a command line.
set -eu

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find /data /etc/redis \! -user redis -exec chown redis:redis '{}' +
    exec su redis -s /bin/sh -c 'exec "$0" "$@"' -- "$0" "$@"
fi

if [ "$1" = redis-server ] && [ -n "${REDIS_PASSWORD:-}" ]; then
    umask 077
    printf 'requirepass "%s"\n' "$REDIS_PASSWORD" >/etc/redis/password.conf
    shift
    set -- redis-server /etc/redis/password.conf "$@"
fi

exec "$@"
