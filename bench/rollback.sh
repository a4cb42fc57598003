#!/usr/bin/env bash
# Rolling 5 containers back to the images of a rollback point: `runbook run rollback` against
# the bash loop a stack_rollback script runs (`docker stop`, `docker rm`, `docker run` with the
# container's arguments known to the script), same run, same engine, same stack:
#   - 5 busybox containers, each with a named volume, on one user network, exiting at once on
#     SIGTERM as a well-behaved service does (stop timeout 10 s);
#   - before every timed run (hyperfine --prepare, not timed) the stack is "released" onto a
#     v2 image; each command then brings it back to v1.
# runbook stops every container with its stop signal and waits for it (grace period honoured);
# the loop is timed both with `docker stop -t 0` (SIGKILL at once, as the scripts we replace
# did) and with a plain `docker stop` (grace period honoured, like runbook). For reference, the
# engine's own share: the same stops and starts as bare concurrent API calls.
#
#   bench/rollback.sh      # needs the engine and test images (scripts/provision-docker),
#                          # builds the release binary, prints the table
# Figures go to docs/benchmarks.md by hand, with the date and machine this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/lib.sh
source bench/lib.sh
work=$(mktemp -d)
stack="rbroll$$"
cleanup() {
    bench_remove_stack "$stack"
    docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$stack-app:" | xargs -r docker rmi >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

bench_prepare hyperfine
export RUNBOOK_STATE_DIR=$work/state

for v in 1 2; do
    printf 'FROM runbook-test/busybox:latest\nLABEL bench.release=%s\n' "$v" |
        DOCKER_BUILDKIT=0 docker build -q -t "$stack-app:$v" - >/dev/null
done
docker network create --label "runbook.stack=$stack" "$stack-net" >/dev/null

# What the script knows about each container: its `docker run` arguments.
cat >"$work/run.sh" <<'SH'
# run.sh STACK SLOT IMAGE: the container of SLOT, as the stack defines it.
sleeper='trap "exit 0" TERM; sleep 3600 & wait'
docker run -d --name "$1-$2" --label "runbook.stack=$1" --network "$1-net" \
    -v "$1-data$2:/data" --env "SLOT=$2" --stop-timeout 10 "$3" sh -c "$sleeper" >/dev/null
SH
cat >"$work/release.sh" <<'SH'
# release.sh STACK: every container recreated on the v2 image.
for i in 1 2 3 4 5; do
    docker rm -f "$1-$i" >/dev/null
    bash "$(dirname "$0")/run.sh" "$1" "$i" "$1-app:2"
done
SH
cat >"$work/loop.sh" <<'SH'
# loop.sh STACK STOP_ARGS: the scripted rollback, one container after the other.
for i in 1 2 3 4 5; do
    docker stop $2 "$1-$i" >/dev/null
    docker rm "$1-$i" >/dev/null
    bash "$(dirname "$0")/run.sh" "$1" "$i" "$1-app:1"
done
SH
cat >"$work/floor.sh" <<'SH'
# floor.sh STACK: the engine's own share of any rollback, for reference: the 5 containers
# stopped together then started together by bare API calls (no create, rename or remove).
sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
for verb in stop start; do
    for i in 1 2 3 4 5; do
        curl -fsS --unix-socket "${sock#unix://}" -X POST "http://localhost/containers/$1-$i/$verb" &
    done
    wait
done
SH

for i in 1 2 3 4 5; do
    docker volume create --label "runbook.stack=$stack" "$stack-data$i" >/dev/null
    bash "$work/run.sh" "$stack" "$i" "$stack-app:1"
done
"$bin" run tag -p "stack=$stack" -p "backup_dir=$work/backups" >/dev/null 2>&1

bench_machine
cd "$work"
v1=$(docker image inspect -f '{{.Id}}' "$stack-app:1")
bash release.sh "$stack"
"$bin" run rollback -p "stack=$stack" -p "backup_dir=$work/backups" --yes >/dev/null 2>&1
for i in 1 2 3 4 5; do
    test "$(docker inspect -f '{{.Image}}' "$stack-$i")" = "$v1"
done

hyperfine --warmup 1 --runs 10 -N --export-json "$work/rollback.json" \
    --prepare "bash release.sh $stack" \
    -n "runbook rollback (stop with grace period)" \
    "$bin run rollback -p stack=$stack -p backup_dir=$work/backups --yes" \
    -n "bash loop: docker stop -t 0 / rm / run" "bash loop.sh $stack '-t 0'" \
    -n "bash loop: docker stop / rm / run" "bash loop.sh $stack ''" \
    -n "engine floor: 5 stops together, then 5 starts together (curl)" "bash floor.sh $stack" \
    >/dev/null 2>&1
python3 - "$work/rollback.json" <<'PY'
import json, sys
print("| command | median | mean ± sd | runs |")
print("|---|---:|---:|---:|")
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"| {r['command']} | {r['median']*1000:.0f} ms | {r['mean']*1000:.0f} ± {r['stddev']*1000:.0f} ms | {len(r['times'])} |")
PY
