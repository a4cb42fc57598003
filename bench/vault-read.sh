#!/usr/bin/env bash
# Reading one secret from Vault into a 0600 file, the most common line of a Vault shell
# script: `bao kv get -field=... > file` (what the drawer scripts run, with `vault` or `bao`)
# against a runbook playbook doing the same through the HTTP API. Both talk to the same
# OpenBao dev server, started here on a free port and stopped at the end.
#
#   bench/vault-read.sh     # builds the release binary if needed; needs hyperfine and OpenBao
#                           # (scripts/provision-openbao); prints the table
# Figures go to docs/benchmarks.md by hand, with the date and machine this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
bao=${RUNBOOK_TEST_BAO:-$(scripts/provision-openbao 2>/dev/null)}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export VAULT_ADDR=http://127.0.0.1:$port VAULT_TOKEN=bench-root-token BAO_ADDR=http://127.0.0.1:$port BAO_TOKEN=bench-root-token
HOME=$work "$bao" server -dev -dev-root-token-id=$VAULT_TOKEN -dev-listen-address=127.0.0.1:$port >"$work/bao.log" 2>&1 &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT

if ! command -v hyperfine >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine >/dev/null
fi
cargo build --release -q
bin=$root/target/release/runbook
until curl -fs "$VAULT_ADDR/v1/sys/health" >/dev/null; do sleep 0.2; done
HOME=$work "$bao" kv put -mount=secret shop/db password=bench-value-0123456789 >/dev/null

cat >"$work/read.rhai" <<'RHAI'
//! name: read
//! version: 1.0.0
//! description: Read one secret into a 0600 file.

let db = vault::kv_get(vault::connect(), "secret", "shop/db");
fs::write_secret("password", db.password);
RHAI

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), $("$bao" version)"
cd "$work"
export RUNBOOK_STATE_DIR=$work/state HOME=$work
hyperfine --warmup 3 --min-runs 50 -N --export-json "$work/read.json" \
    "$bin run read.rhai" \
    "sh -c 'umask 077; $bao kv get -mount=secret -field=password shop/db > password'" >/dev/null 2>&1
python3 - "$work/read.json" <<'PY'
import json, sys
print("| command | median | mean ± sd | runs |")
print("|---|---:|---:|---:|")
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"| `{r['command']}` | {r['median']*1000:.1f} ms | {r['mean']*1000:.1f} ± {r['stddev']*1000:.1f} ms | {len(r['times'])} |")
PY
