#!/usr/bin/env bash
# A disaster-recovery drill on a stack with about 200 MB of Postgres data: `runbook run dr`
# against the scripted drill it replaces (bench/dr-drill.sh: pg_dump | zstd | age, tar of
# each volume through a busybox container, docker rm / volume rm, then everything back with
# the containers' `docker run` arguments known to the script), same run, same engine, same
# stack, same age recipient. Each prints its total time and its recovery time (RTO: from the
# start of the recovery to the last row count checked); both check that the data came back.
#
#   bench/dr.sh [ROWS]     # needs the engine and test images (scripts/provision-docker),
#                          # builds the release binary; ROWS defaults to 1.25 million (~200 MB)
# Figures go to docs/benchmarks.md by hand, with the date and machine this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/lib.sh
source bench/lib.sh
rows=${1:-1250000}
work=$(mktemp -d)
stack="rbdr$$"
cleanup() {
    bench_remove_stack "$stack"
    rm -rf "$work"
}
trap cleanup EXIT

bench_prepare age zstd
export RUNBOOK_STATE_DIR=$work/state

age-keygen -o "$work/key.txt" 2>/dev/null
age-keygen -y "$work/key.txt" >"$work/recipients.txt"
head -c 24 /dev/urandom | base64 >"$work/db-password"
chmod 644 "$work/db-password"
cp "$root/bench/dr-drill.sh" "$root/bench/dr-stack.sh" "$work/"

# The stack, as its operators' script knows it.
docker network create --label "runbook.stack=$stack" "$stack-net" >/dev/null
for v in pgdata files cache; do
    docker volume create --label "runbook.stack=$stack" "$stack-$v" >/dev/null
done
# shellcheck source=bench/dr-stack.sh
source "$root/bench/dr-stack.sh"
run_db "$stack" "$work"
run_web "$stack"
run_worker "$stack"
wait_healthy "$stack-db"

echo "loading data: $rows rows" >&2
psql_in() { docker exec -i -e PGPASSWORD="$(cat "$work/db-password")" "$stack-db" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
psql_in -d shop -c "CREATE TABLE orders (id bigint PRIMARY KEY, customer int, item text, note text);
    INSERT INTO orders SELECT g, g % 5000, md5(g::text), repeat(md5((g * 7)::text), 2) FROM generate_series(1, $rows) g;
    CREATE TABLE customers AS SELECT g AS id, 'customer ' || g AS name FROM generate_series(1, 5000) g;"
size=$(psql_in -d shop -At -c "SELECT pg_size_pretty(pg_database_size('shop'))")
docker exec "$stack-web" sh -c 'mkdir -p /data/site && dd if=/dev/urandom of=/data/site/blob bs=1M count=20 2>/dev/null && echo hi > /data/site/index.html'
docker exec "$stack-worker" sh -c 'dd if=/dev/urandom of=/cache/state bs=1M count=5 2>/dev/null'

bench_machine
echo "data: database shop $size ($rows + 5000 rows), volumes 20 MB + 5 MB"
cd "$work"
runs=${RUNS:-3}
echo "| run | command | total | RTO |"
echo "|---|---|---:|---:|"
for n in $(seq 1 "$runs"); do
    start=$(date +%s.%N)
    "$bin" run dr -p "stack=$stack" -p "backup_dir=$work/backups" -p "recipients=$work/recipients.txt" \
        -p "identity=$work/key.txt" --yes --json >"$work/dr.json" 2>"$work/dr.log" || { cat "$work/dr.log" >&2; exit 1; }
    end=$(date +%s.%N)
    rto=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["result"]["rto_seconds"])' "$work/dr.json")
    echo "| $n | runbook run dr | $(python3 -c "print(f'{$end - $start:.1f}')") s | $rto s |"
    rm -rf "$work/backups"

    out=$(bash dr-drill.sh "$stack" "$work" 2>"$work/drill.log") || { cat "$work/drill.log" >&2; exit 1; }
    echo "| $n | bash dr-drill.sh | ${out% *} s | ${out#* } s |"
    rm -rf "$work/drill"
done
echo
echo "runbook's steps in its last run:"
sed -n '/^drill of stack/,/recovery time/p' "$work/dr.log"
