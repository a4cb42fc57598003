#!/usr/bin/env bash
# Backup + restore of a ~200 MB MariaDB database, two ways, same run, same server, warm cache:
#   runbook:    runbook run backup (mariadb-dump --single-transaction → zstd → age → file with
#               SHA-256, the password in a 0600 options file), then runbook run restore --yes
#               -p safety_copy=false (the server recreated from its spec on an empty volume,
#               initialised, the dump streamed into `mariadb`, every table counted)
#   shell way:  mariadb-dump --single-transaction … | gzip | gpg --symmetric, then
#               gpg -d | gunzip | mariadb, into the same running server
# Prints wall time of each half and of the round trip, and the set size.
#
#   bench/mariadb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_prepare gzip gpg
image=runbook-test/mariadb:10.11-r2
stack=bench-mariadb
work=$(mktemp -d /tmp/bench-mariadb.XXXXXX)
trap 'bench_remove_stack $stack; rm -rf "$work"' EXIT
bench_remove_stack $stack

password=bench-maria-password
printf '%s' "$password" >"$work/root-password"
printf '%s' bench-passphrase >"$work/passphrase"
chmod 600 "$work/passphrase"
chmod 644 "$work/root-password"  # read by the server's entrypoint as user mysql
docker volume create --label runbook.stack=$stack $stack-data >/dev/null
docker run -d --name $stack-db --label runbook.stack=$stack -v $stack-data:/var/lib/mysql \
    -v "$work/root-password:/run/secrets/root:ro" -e MARIADB_ROOT_PASSWORD_FILE=/run/secrets/root $image >/dev/null
for _ in $(seq 1 240); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' $stack-db)" = healthy ] && break
    [ "$(docker inspect -f '{{.State.Running}}' $stack-db)" = true ] || { docker logs $stack-db >&2; exit 1; }
    sleep 0.5
done

sql() { docker exec -i -e MYSQL_PWD="$password" $stack-db mariadb -uroot "$@"; }
echo "bench: making the database (about 200 MB)" >&2
sql <<'SQL'
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.orders (id INT PRIMARY KEY, customer CHAR(32), note TEXT, amount DECIMAL(10,2));
INSERT INTO shop.orders SELECT seq, MD5(seq), CONCAT(REPEAT(MD5(seq * 7), 3), ' ', SHA1(seq)), seq % 1000 / 7
    FROM seq_1_to_1000000;
SQL
sql -N -e "ANALYZE TABLE shop.orders" >/dev/null
size=$(sql -N -e "SELECT ROUND(SUM(data_length + index_length) / 1048576) FROM information_schema.tables WHERE table_schema = 'shop'")
echo "database: shop.orders, 1000000 rows, ${size} MiB in InnoDB"

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

export RUNBOOK_BACKUP_PASSPHRASE=bench-passphrase
cd "$work"
t0=$(now)
"$bin" run backup -p stack=$stack -p backup_dir="$work/sets" >"$work/backup.out" 2>"$work/backup.log"
sync
t1=$(now)
"$bin" run restore -p stack=$stack -p backup_dir="$work/sets" -p safety_copy=false --yes >"$work/restore.out" 2>"$work/restore.log"
t2=$(now)
rows=$(sql -N -e "SELECT COUNT(*) FROM shop.orders")
[ "$rows" = 1000000 ] || { echo "runbook restore brought back $rows rows" >&2; exit 1; }
set_bytes=$(du -sb "$work/sets" | cut -f1)

t3=$(now)
docker exec -e MYSQL_PWD="$password" $stack-db mariadb-dump -uroot --single-transaction --routines --triggers --events --databases shop |
    gzip | gpg --batch --quiet --symmetric --pinentry-mode loopback --passphrase-file "$work/passphrase" -o "$work/shop.sql.gz.gpg"
sync
t4=$(now)
gpg --batch --quiet --decrypt --pinentry-mode loopback --passphrase-file "$work/passphrase" "$work/shop.sql.gz.gpg" |
    gunzip | docker exec -i -e MYSQL_PWD="$password" $stack-db mariadb -uroot
t5=$(now)
rows=$(sql -N -e "SELECT COUNT(*) FROM shop.orders")
[ "$rows" = 1000000 ] || { echo "shell restore brought back $rows rows" >&2; exit 1; }
shell_bytes=$(stat -c %s "$work/shop.sql.gz.gpg")

bench_machine
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %9s %9s %11s %12s\n' way backup restore round-trip bytes
printf '%-10s %8.1fs %8.1fs %10.1fs %12s\n' runbook "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")" "$(elapsed "$t0" "$t2")" "$set_bytes"
printf '%-10s %8.1fs %8.1fs %10.1fs %12s\n' shell "$(elapsed "$t3" "$t4")" "$(elapsed "$t4" "$t5")" "$(elapsed "$t3" "$t5")" "$shell_bytes"
echo "runbook's steps:"
grep -E '^  [a-z]' "$work/backup.out" "$work/restore.out" | sed "s|$work/||"
