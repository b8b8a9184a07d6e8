#!/usr/bin/env bash
# The whole test suite while stress-ng keeps every core busy (CPU, plus some I/O and memory
# pressure): the proof that `make test` does not depend on an idle machine. Run by
# `make test-load`; the load is stopped on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v stress-ng >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq stress-ng >/dev/null; }
cpus=$(nproc)
# one CPU hog per core at full load, one I/O syncer, one VM worker of 256 MiB
stress-ng --cpu "$cpus" --cpu-load 100 --io 1 --vm 1 --vm-bytes 256M --timeout 3h --quiet &
load=$!
trap 'kill "$load" 2>/dev/null; wait "$load" 2>/dev/null || true' EXIT
sleep 2
echo "== stress-ng (pid $load) keeps $cpus cores busy; running the whole suite"
uptime
./node_modules/.bin/vitest run
