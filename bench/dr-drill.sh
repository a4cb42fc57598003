#!/usr/bin/env bash
# The scripted disaster-recovery drill runbook's `dr` replaces, for bench/dr.sh: record the
# row counts and the volumes' files, back up (pg_dump | zstd | age, tar of each volume through
# a busybox container, checksums), destroy, recover (volumes, containers from the arguments
# the script knows, wait healthy, load the dumps), compare. Prints "TOTAL RTO" in seconds.
#
#   bash dr-drill.sh STACK WORK    # WORK holds db-password, key.txt and recipients.txt
set -euo pipefail
stack=$1 work=$2
# shellcheck source=bench/dr-stack.sh
source "$(dirname "$0")/dr-stack.sh"
dir=$work/drill
mkdir -p "$dir"
pw=$(cat "$work/db-password")
busybox=runbook-test/busybox:latest
seal() { zstd -q -3 -T2 | age -R "$work/recipients.txt" >"$1"; }
unseal() { age -d -i "$work/key.txt" "$1" | zstd -dq; }
pg() { docker exec -i -e PGPASSWORD="$pw" "$stack-db" "$@"; }
counts() {
    pg psql -X -At -h 127.0.0.1 -U postgres -d shop \
        -c "SELECT (SELECT count(*) FROM orders) || '/' || (SELECT count(*) FROM customers)"
}
files() {
    docker run --rm -v "$1:/v:ro" "$busybox" sh -c \
        'cd /v && find . -type f | sort | while read f; do stat -c "%n %a %u:%g %s %Y" "$f"; sha256sum < "$f"; done' | sha256sum
}

start=$(date +%s.%N)
counts_before=$(counts)
files_before="$(files "$stack-files") $(files "$stack-cache")"

pg pg_dumpall -h 127.0.0.1 -U postgres --globals-only | seal "$dir/roles.sql.zst.age"
pg pg_dump -h 127.0.0.1 -U postgres --clean --if-exists -d shop | seal "$dir/shop.sql.zst.age"
for v in files cache; do
    docker run --rm -v "$stack-$v:/v:ro" "$busybox" tar -C /v -cf - . | seal "$dir/$v.tar.zst.age"
done
docker inspect "$stack-db" "$stack-web" "$stack-worker" >"$dir/specs.json"
(cd "$dir" && sha256sum -- *.age >SHA256SUMS)

docker rm -f "$stack-db" "$stack-web" "$stack-worker" >/dev/null
docker volume rm "$stack-pgdata" "$stack-files" "$stack-cache" >/dev/null

recovery=$(date +%s.%N)
(cd "$dir" && sha256sum --quiet -c SHA256SUMS)
for v in pgdata files cache; do
    docker volume create --label "runbook.stack=$stack" "$stack-$v" >/dev/null
done
for v in files cache; do
    unseal "$dir/$v.tar.zst.age" | docker run --rm -i -v "$stack-$v:/v" "$busybox" tar -C /v -xpf -
done
run_db "$stack" "$work"
run_web "$stack"
run_worker "$stack"
wait_healthy "$stack-db"
# The superuser exists already: psql reports it and goes on.
unseal "$dir/roles.sql.zst.age" | pg psql -X -q -h 127.0.0.1 -U postgres -d postgres >/dev/null 2>&1 || true
unseal "$dir/shop.sql.zst.age" | pg psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d shop >/dev/null
counts_after=$(counts)
end=$(date +%s.%N)

[ "$counts_after" = "$counts_before" ] || { echo "row counts differ: $counts_after, had $counts_before" >&2; exit 1; }
files_after="$(files "$stack-files") $(files "$stack-cache")"
[ "$files_after" = "$files_before" ] || { echo "volume files differ" >&2; exit 1; }
python3 -c "print(f'{$end - $start:.1f} {$end - $recovery:.1f}')"
