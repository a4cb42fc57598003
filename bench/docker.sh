#!/usr/bin/env bash
# Docker work a runbook does against the loop of `docker` CLI calls a shell script would run,
# same run, same engine:
#   - inspect the 50 containers of a stack;
#   - stop and recreate 10 of them (capture the config, stop, remove, create, start).
#
#   bench/docker.sh        # needs the engine and test images (scripts/provision-docker),
#                          # builds the release binary, prints the table
# Figures go to docs/benchmarks.md by hand, with the date and machine this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
stack="rbbench$$"
cleanup() {
    docker ps -aq --filter "label=runbook.stack=$stack" | xargs -r docker rm -f >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

if ! command -v hyperfine >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine >/dev/null
fi
scripts/provision-docker 2>/dev/null
cargo build --release -q
bin=$root/target/release/runbook
image=runbook-test/busybox:latest
# Stops at once on SIGTERM, as a well-behaved service does.
sleeper='trap "exit 0" TERM; sleep 3600 & wait'

for i in $(seq -w 1 50); do
    docker run -d --name "$stack-$i" --label "runbook.stack=$stack" --label "bench.slot=$i" \
        --env "SLOT=$i" "$image" sh -c "$sleeper" >/dev/null
done

cat >"$work/inspect.rhai" <<'RHAI'
//! name: inspect
//! version: 1.0.0
//! description: Inspect every container of a stack.
//! param stack: string required

let n = 0;
for row in docker::containers(#{ stack: params.stack }) {
    docker::inspect(row.name);
    n += 1;
}
n
RHAI
cat >"$work/inspect.sh" <<'SH'
for c in $(docker ps -aq --filter "label=runbook.stack=$1"); do
    docker inspect "$c" >/dev/null
done
SH

cat >"$work/recreate.rhai" <<'RHAI'
//! name: recreate
//! version: 1.0.0
//! description: Stop and recreate ten containers of a stack from their captured specs.
//! param stack: string required

for i in 1..=10 {
    let name = `${params.stack}-${if i < 10 { "0" } else { "" }}${i}`;
    let spec = docker::spec(name);
    docker::stop(name);
    docker::remove(name);
    docker::create(spec);
    docker::start(name);
}
RHAI
# What a script does knowing each container's `docker run` arguments: keep the inspect, then
# stop, remove, run again.
cat >"$work/recreate.sh" <<'SH'
stack=$1 image=$2 sleeper=$3 dir=$4
for i in $(seq -w 1 10); do
    docker inspect "$stack-$i" >"$dir/$stack-$i.json"
    docker stop "$stack-$i" >/dev/null
    docker rm "$stack-$i" >/dev/null
    docker run -d --name "$stack-$i" --label "runbook.stack=$stack" --label "bench.slot=$i" \
        --env "SLOT=$i" "$image" sh -c "$sleeper" >/dev/null
done
SH

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "engine: Docker $(docker version -f '{{.Server.Version}}') (API $(docker version -f '{{.Server.APIVersion}}')), client $(docker version -f '{{.Client.Version}}')"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
cd "$work"
export RUNBOOK_STATE_DIR=$work/state
test "$("$bin" run inspect.rhai -p "stack=$stack" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"])')" = 50

hyperfine --warmup 2 --runs 20 -N --export-json "$work/inspect.json" \
    -n "runbook: inspect 50 containers" "$bin run inspect.rhai -p stack=$stack" \
    -n "docker CLI loop: inspect 50 containers" "bash inspect.sh $stack" >/dev/null 2>&1
hyperfine --warmup 1 --runs 10 -N --export-json "$work/recreate.json" \
    -n "runbook: stop + recreate 10 containers" "$bin run recreate.rhai -p stack=$stack" \
    -n "docker CLI loop: stop + recreate 10 containers" "bash recreate.sh $stack $image '$sleeper' $work" >/dev/null 2>&1
python3 - "$work/inspect.json" "$work/recreate.json" <<'PY'
import json, sys
print("| command | median | mean ± sd | runs |")
print("|---|---:|---:|---:|")
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        print(f"| {r['command']} | {r['median']*1000:.0f} ms | {r['mean']*1000:.0f} ± {r['stddev']*1000:.0f} ms | {len(r['times'])} |")
PY
