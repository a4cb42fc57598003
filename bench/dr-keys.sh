#!/usr/bin/env bash
# The price of a passphrase: a disaster-recovery drill of a stack with one Postgres and 10
# volumes, with the passphrase (scrypt) and with age recipients, in the same run on the same
# stack; then verify-backup of a small set with each. Before set format v2 every artifact paid
# its own scrypt derivation, so the passphrase RTO grew with the number of artifacts; now
# each set pays one.
#
#   bench/dr-keys.sh        # needs the engine and test images (scripts/provision-docker),
#                           # builds the release binary; RUNS (default 3) drills per key
# Figures go to docs/benchmarks.md by hand, with the date and machine this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
work=$(mktemp -d)
stack="rbkeys$$"
cleanup() {
    bench_remove_stack "$stack"
    rm -rf "$work"
}
trap cleanup EXIT

bench_prepare age zstd
export RUNBOOK_STATE_DIR=$work/state
age-keygen -o "$work/key.txt" 2>/dev/null
age-keygen -y "$work/key.txt" >"$work/recipients.txt"
head -c 24 /dev/urandom | base64 >"$work/passphrase"
head -c 24 /dev/urandom | base64 >"$work/db-password"
chmod 644 "$work/db-password"

docker network create --label "runbook.stack=$stack" "$stack-net" >/dev/null
docker volume create --label "runbook.stack=$stack" "$stack-pgdata" >/dev/null
# shellcheck source=bench/dr-stack.sh
source bench/dr-stack.sh
run_db "$stack" "$work"
mounts=()
for i in $(seq 1 10); do
    docker volume create --label "runbook.stack=$stack" "$stack-v$i" >/dev/null
    mounts+=(-v "$stack-v$i:/v$i")
done
docker run -d --name "$stack-app" --label "runbook.stack=$stack" --network "$stack-net" "${mounts[@]}" \
    runbook-test/busybox:latest sh -c 'trap "exit 0" TERM; sleep 100000 & wait' >/dev/null
wait_healthy "$stack-db"
docker exec -i -e PGPASSWORD="$(cat "$work/db-password")" "$stack-db" \
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d shop \
    -c "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS item FROM generate_series(1, 50000) g;"
docker exec "$stack-app" sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do dd if=/dev/urandom of=/v$i/blob bs=1M count=1 2>/dev/null; echo $i > /v$i/n; done'

bench_machine
echo "stack: 1 Postgres (50,000 rows), 1 service with 10 volumes of 1 MB each"
cd "$work"
passphrase=(-p "passphrase_file=$work/passphrase")
recipients=(-p "recipients=$work/recipients.txt" -p "identity=$work/key.txt")
drill() {
    "$bin" run dr -p "stack=$stack" -p "backup_dir=$work/backups" "$@" --yes --json >"$work/dr.json" 2>"$work/dr.log" ||
        { cat "$work/dr.log" >&2; exit 1; }
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.1f s | %.1f s" % (r["duration_ms"]/1000, r["result"]["rto_seconds"]))' "$work/dr.json"
}
echo "| run | key | drill total | RTO |"
echo "|---|---|---:|---:|"
for n in $(seq 1 "${RUNS:-3}"); do
    echo "| $n | passphrase | $(drill "${passphrase[@]}") |"
    rm -rf "$work/backups"
    echo "| $n | recipients | $(drill "${recipients[@]}") |"
done

# verify-backup of a small set (the last drill's, 13 artifacts), each key, five times.
"$bin" run backup -p "stack=$stack" -p "backup_dir=$work/small-pass" "${passphrase[@]}" >/dev/null 2>&1
"$bin" run backup -p "stack=$stack" -p "backup_dir=$work/small-rcpt" -p "recipients=$work/recipients.txt" >/dev/null 2>&1
echo
echo "| verify-backup of a small set | best of 5 | median of 5 |"
echo "|---|---:|---:|"
verify() {
    local label=$1 times=()
    shift
    for _ in 1 2 3 4 5; do
        start=$(date +%s.%N)
        "$bin" run verify-backup -p "stack=$stack" "$@" >/dev/null 2>"$work/verify.log" || { cat "$work/verify.log" >&2; exit 1; }
        end=$(date +%s.%N)
        times+=("$(python3 -c "print($end - $start)")")
    done
    python3 -c 'import sys,statistics; t=sorted(map(float,sys.argv[2:])); print("| %s | %.2f s | %.2f s |" % (sys.argv[1], t[0], statistics.median(t)))' "$label" "${times[@]}"
}
verify "passphrase ($(du -sh "$work/small-pass" | cut -f1))" -p "backup_dir=$work/small-pass" "${passphrase[@]}"
verify "recipients ($(du -sh "$work/small-rcpt" | cut -f1))" -p "backup_dir=$work/small-rcpt" -p "identity=$work/key.txt"
