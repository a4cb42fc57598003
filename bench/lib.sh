# Shared by the bench scripts that drive a stack: sourced from the repository root.
#   bench_prepare TOOL...   installs missing Debian tools, provisions the engine and test
#                           images, builds the release binary; sets $bin
#   bench_machine           prints the machine, engine and date lines the figures need
#   bench_remove_stack S    removes the containers, volumes and network labelled with stack S

bench_prepare() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$tool" >/dev/null
    done
    scripts/provision-docker 2>/dev/null
    cargo build --release -q
    bin=$PWD/target/release/runbook
}

bench_machine() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
    echo "engine: Docker $(docker version -f '{{.Server.Version}}') (API $(docker version -f '{{.Server.APIVersion}}')), client $(docker version -f '{{.Client.Version}}')"
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
}

bench_remove_stack() {
    docker ps -aq --filter "label=runbook.stack=$1" | xargs -r docker rm -f >/dev/null
    docker volume ls -q --filter "label=runbook.stack=$1" | xargs -r docker volume rm >/dev/null
    docker network rm "$1-net" >/dev/null 2>&1 || true
}
