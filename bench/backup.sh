#!/usr/bin/env bash
# Backing up a stack whose volume holds 1 GiB of mixed data (bench/make-dataset.py: 70%
# compressible text, 30% random) plus a ~200 MB Postgres database, three ways, same run, same
# stack, warm page cache:
#   runbook:     runbook run backup (tar → zstd → age → file with SHA-256, pg_dump → zstd → age)
#   shell way:   docker run … tar czf - | gpg --symmetric; pg_dump | gzip | gpg; sha256sum
#   best shell:  docker run … tar cf - | zstd -3 -T0 | age -r; pg_dump -Fc | age -r; sha256sum
# Every way writes its files and syncs them. Prints wall time and peak RSS (the largest
# process of the way) for each round.
#
#   bench/backup.sh             # 2 rounds
#   ROUNDS=3 bench/backup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=${ROUNDS:-2}

for tool in age age-keygen zstd gpg gzip /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install age zstd gnupg time)" >&2; exit 1; }
done
scripts/provision-docker
cargo build --release -q
bin=$root/target/release/runbook
busybox=runbook-test/busybox:latest
postgres=runbook-test/postgres:15

data=bench/data/mixed-1g
[ -f "$data/.complete" ] || {
    rm -rf "$data"
    python3 bench/make-dataset.py "$data" 1
    touch "$data/.complete"
}

stack=rbbench$$
work=$(mktemp -d -p "$root/bench")
cleanup() {
    docker rm -f "$stack-db" "$stack-app" >/dev/null 2>&1 || true
    docker volume rm -f "$stack-files" "$stack-pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
labels=(--label "runbook.stack=$stack" --label runbook.bench=backup)

echo "building the stack $stack: 1 GiB volume, ~200 MB database" >&2
docker volume create "${labels[@]}" "$stack-files" >/dev/null
docker volume create "${labels[@]}" "$stack-pg" >/dev/null
docker run --rm -v "$stack-files:/data" -v "$root/$data:/src:ro" "$busybox" cp -a /src/. /data/
docker run -d --name "$stack-app" "${labels[@]}" -v "$stack-files:/data" "$busybox" sleep 1000000 >/dev/null
docker run -d --name "$stack-db" "${labels[@]}" -e POSTGRES_PASSWORD=bench -e POSTGRES_DB=shop \
    -v "$stack-pg:/var/lib/postgresql/data" "$postgres" >/dev/null
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$stack-db")" = healthy ]; do sleep 0.5; done
docker exec "$stack-db" psql -q -h 127.0.0.1 -U postgres -d shop -c \
    "CREATE TABLE events AS SELECT g AS id, now() - g * interval '1 second' AS at, md5(g::text) AS k,
            'event ' || (g % 97) || ' ' || repeat(md5((g * 7)::text), 2) AS payload
       FROM generate_series(1, 1300000) g;"
db_size=$(docker exec "$stack-db" psql -At -h 127.0.0.1 -U postgres -d shop -c "SELECT pg_size_pretty(pg_database_size('shop'))")

age-keygen -o "$work/key.txt" 2>/dev/null
age-keygen -y "$work/key.txt" >"$work/recipients.txt"
recipient=$(cat "$work/recipients.txt")
head -c 32 /dev/urandom | base64 >"$work/gpg-pass"

shell_way() {
    local out=$1
    mkdir -p "$out"
    docker run --rm -v "$stack-files:/data:ro" "$busybox" tar czf - -C /data . |
        gpg --batch --quiet --symmetric --cipher-algo AES256 --passphrase-file "$work/gpg-pass" -o "$out/files.tgz.gpg"
    docker exec -e PGPASSWORD=bench "$stack-db" pg_dump -h 127.0.0.1 -U postgres -d shop | gzip |
        gpg --batch --quiet --symmetric --cipher-algo AES256 --passphrase-file "$work/gpg-pass" -o "$out/shop.sql.gz.gpg"
    (cd "$out" && sha256sum ./* >SHA256SUMS)
    sync "$out"/*
}

best_shell() {
    local out=$1
    mkdir -p "$out"
    docker run --rm -v "$stack-files:/data:ro" "$busybox" tar cf - -C /data . |
        zstd -q -3 -T0 | age -r "$recipient" >"$out/files.tar.zst.age"
    docker exec -e PGPASSWORD=bench "$stack-db" pg_dump -Fc -h 127.0.0.1 -U postgres -d shop |
        age -r "$recipient" >"$out/shop.dump.age"
    (cd "$out" && sha256sum ./* >SHA256SUMS)
    sync "$out"/*
}
export -f shell_way best_shell
export stack busybox work recipient

measure() { # NAME COMMAND...: prints "NAME  wall s  peak RSS MiB"
    local name=$1
    shift
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r wall rss <"$work/time"
    printf '%-12s %7.1f s  %6.0f MiB  %s\n' "$name" "$wall" "$((rss / 1024))" "$(du -sh "$work/$name-out" | cut -f1)"
}

echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Docker $(docker version -f '{{.Server.Version}}'), database $db_size"
for round in $(seq 1 "$rounds"); do
    echo "round $round"
    rm -rf "$work"/*-out
    measure runbook "$bin" run backup -p "stack=$stack" -p "backup_dir=$work/runbook-out" -p "recipients=$work/recipients.txt"
    measure shell bash -c "shell_way $work/shell-out"
    measure best-shell bash -c "best_shell $work/best-shell-out"
done
