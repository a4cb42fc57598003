#!/usr/bin/env bash
# Throughput and peak memory of `archive::pack` (tar → zstd -3 → age → file, SHA-256 on the
# way, one process) against the shell pipelines it replaces, same run, same files, warm page
# cache:
#   gpg:       tar czf - | gpg --symmetric --cipher-algo AES256 > out; sha256sum out
#   zstd+age:  tar cf - | zstd -3 -T0 | age -r KEY > out; sha256sum out
#   zstd only: tar cf - | zstd -3 -T0 | cat >/dev/null   (no encryption, no checksum, no file)
# Every command that writes an archive also fsyncs it (runbook does, so the shell ones run
# `sync FILE`): a backup that is not on disk is not a backup.
#
#   bench/archive.sh            # 1 GiB dataset, 3 rounds; then runbook and zstd+age on 4 GiB
#   ROUNDS=5 bench/archive.sh
# Datasets are generated once under bench/data (gitignored). Figures go to
# docs/benchmarks.md by hand, with the date and machine this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=${ROUNDS:-3}
out=$root/bench/out
work=$(mktemp -d)
trap 'rm -rf "$work" "$out"' EXIT
mkdir -p "$out"

for tool in age age-keygen zstd gpg /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install age zstd gnupg time)" >&2; exit 1; }
done
cargo build --release -q
bin=$root/target/release/runbook

for gib in 1 4; do
    [ -f "bench/data/mixed-${gib}g/.complete" ] || {
        rm -rf "bench/data/mixed-${gib}g"
        python3 bench/make-dataset.py "bench/data/mixed-${gib}g" "$gib"
        touch "bench/data/mixed-${gib}g/.complete"
    }
done
# Freshly generated data is still being written back; measuring during that measures the disk.
sync

age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
head -c 32 /dev/urandom | base64 >"$work/gpg-pass"
export RUNBOOK_STATE_DIR=$work/state GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"

cmd_runbook() { echo "$bin run bench/archive-pack.rhai -p src=$1 -p out=$out -p recipient=$recipient >/dev/null 2>$work/runbook.err"; }
cmd_age() { echo "tar -C $1 -cf - . | zstd -3 -T0 -q | age -r $recipient >$out/shell.tar.zst.age && sync $out/shell.tar.zst.age && sha256sum $out/shell.tar.zst.age >/dev/null"; }
cmd_gpg() { echo "tar -C $1 -czf - . | gpg --batch --pinentry-mode loopback --passphrase-file $work/gpg-pass --symmetric --cipher-algo AES256 -o - >$out/shell.tar.gz.gpg && sync $out/shell.tar.gz.gpg && sha256sum $out/shell.tar.gz.gpg >/dev/null"; }
cmd_zstd() { echo "tar -C $1 -cf - . | zstd -3 -T0 -q | cat >/dev/null"; }

# The machine is shared: before each run, wait (up to 3 minutes) until the CPUs are mostly
# idle over two seconds, and print how idle they were.
wait_idle() {
    local idle waited=0
    while :; do
        idle=$(awk '/^cpu /{i=$5+$6; t=0; for(k=2;k<=NF;k++) t+=$k; print i, t}' /proc/stat)
        sleep 2
        idle=$(awk -v before="$idle" '/^cpu /{split(before, b, " "); i=$5+$6; t=0; for(k=2;k<=NF;k++) t+=$k; printf "%d", 100*(i-b[1])/(t-b[2])}' /proc/stat)
        if ((idle >= ${IDLE:-85} || waited >= 180)); then
            echo "$idle" >>"$work/idle"
            return
        fi
        waited=$((waited + 2))
    done
}

# One timed run: prints "seconds max-rss-KiB user sys" (RSS of the largest single process of a
# pipeline; CPU of all of them).
timed() {
    rm -f "$out"/*
    sync
    wait_idle
    /usr/bin/time -f "%e %M %U %S" -o "$work/time" bash -o pipefail -c "$1"
    cat "$work/time"
}

warm() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }

declare -A results
run_set() {
    local gib=$1 names=$2 rounds=$3 data=$root/bench/data/mixed-${gib}g
    warm "$data"; warm "$data"
    echo "load before the ${gib} GiB runs of $names: $(cut -d' ' -f1-3 /proc/loadavg)"
    for ((r = 1; r <= rounds; r++)); do
        for name in $names; do
            results[$gib,$name]+="$(timed "$(cmd_$name "$data")");"
        done
    done
}

bytes() { du -sb --apparent-size "$root/bench/data/mixed-${1}g" | cut -f1; }

report() {
    local gib=$1 name=$2 label=$3 size
    size=$(bytes "$gib")
    python3 - "$size" "${results[$gib,$name]}" "$label" "$gib" <<'PY'
import statistics, sys
size, runs, label, gib = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
runs = [list(map(float, r.split())) for r in runs.split(";") if r.strip()]
secs = statistics.median(r[0] for r in runs)
best = min(r[0] for r in runs)
cpu = statistics.median(r[2] + r[3] for r in runs)
rss = max(r[1] for r in runs) / 1024
print(f"| {label} | {gib} GiB | {size / secs / 1e6:.0f} MB/s | {size / best / 1e6:.0f} MB/s "
      f"| {secs:.2f} s | {cpu:.2f} s | {rss:.0f} MiB | {len(runs)} |")
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
run_set 1 "runbook age zstd" "$rounds"
run_set 4 "runbook age" 2
run_set 1 "gpg" 1
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "idle CPU before each run (%): $(tr '\n' ' ' <"$work/idle")"
echo
echo "| pipeline | data | throughput (median) | best | time (median) | CPU time (median) | peak RSS | runs |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
report 1 runbook '`runbook` archive::pack (tar+zstd -3+age+SHA-256, fsync)'
report 1 age '`tar | zstd -3 -T0 | age -r` + sync + `sha256sum`'
report 1 gpg '`tar czf - | gpg --symmetric --cipher-algo AES256` + sync + `sha256sum`'
report 1 zstd '`tar | zstd -3 -T0 | cat >/dev/null` (zstd alone)'
report 4 runbook '`runbook` archive::pack'
report 4 age '`tar | zstd -3 -T0 | age -r` + sync + `sha256sum`'
