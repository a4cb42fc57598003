#!/usr/bin/env bash
# Cold start of `runbook run` on a trivial playbook, against what an operator would otherwise
# start: bash, python3, and ansible-playbook on a one-task local playbook. Same run, same machine.
#
#   bench/cold-start.sh            # builds the release binary if needed, installs hyperfine and
#                                  # ansible-core (in bench/.venv) if missing, prints the table
# Figures go to docs/benchmarks.md by hand, with the date and machine this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! command -v hyperfine >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine >/dev/null
fi
if [ ! -x bench/.venv/bin/ansible-playbook ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install -q ansible-core
fi
cargo build --release -q
bin=$root/target/release/runbook

cat >"$work/trivial.rhai" <<'RHAI'
//! name: trivial
//! version: 1.0.0
//! description: One step that does nothing, to time start-up.

step("noop", || 1);
RHAI
cat >"$work/trivial.yml" <<'YAML'
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.command: "true"
YAML

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
cd "$work"
export RUNBOOK_STATE_DIR=$work/state ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
# The real interpreter, not a pyenv shim (a shim adds ~100 ms of bash).
python=$(python3 -c 'import sys; print(sys.executable)')
hyperfine --warmup 5 --min-runs 100 -N --export-json "$work/fast.json" \
    "$bin run trivial.rhai" \
    "bash -c true" \
    "$python -c pass" >/dev/null 2>&1
hyperfine --warmup 1 --runs 10 --export-json "$work/ansible.json" \
    "$root/bench/.venv/bin/ansible-playbook -i localhost, -e ansible_python_interpreter=$root/bench/.venv/bin/python trivial.yml" >/dev/null 2>&1
"$python" - "$work/fast.json" "$work/ansible.json" <<'PY'
import json, sys
print("| command | median | mean ± sd | runs |")
print("|---|---:|---:|---:|")
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        print(f"| `{r['command']}` | {r['median']*1000:.1f} ms | {r['mean']*1000:.1f} ± {r['stddev']*1000:.1f} ms | {len(r['times'])} |")
PY
