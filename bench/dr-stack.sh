# The stack bench/dr.sh drills, as its operators' scripts define it: a Postgres (password in a
# file, like a Docker secret) and two services with volumes, on one network. Sourced by
# bench/dr.sh and bench/dr-drill.sh; STACK is the name, WORK holds db-password.
run_db() {
    docker run -d --name "$1-db" --label "runbook.stack=$1" --network "$1-net" \
        -v "$1-pgdata:/var/lib/postgresql/data" -v "$2/db-password:/run/secrets/pg:ro" \
        -e POSTGRES_PASSWORD_FILE=/run/secrets/pg -e POSTGRES_DB=shop runbook-test/postgres:15 >/dev/null
}
run_web() {
    docker run -d --name "$1-web" --label "runbook.stack=$1" --label runbook.order=2 \
        --network "$1-net" -v "$1-files:/data" runbook-test/busybox:latest \
        sh -c 'trap "exit 0" TERM; sleep 100000 & wait' >/dev/null
}
run_worker() {
    docker run -d --name "$1-worker" --label "runbook.stack=$1" --network "$1-net" \
        -v "$1-cache:/cache" -v "$1-files:/shared" runbook-test/busybox:latest \
        sh -c 'trap "exit 0" TERM; sleep 100000 & wait' >/dev/null
}
wait_healthy() {
    for _ in $(seq 1 600); do
        [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ] && return 0
        sleep 0.2
    done
    echo "$1 never became healthy" >&2
    return 1
}
