#!/usr/bin/env bash
# Benchmark the node agent's NodePrepareResources against the loopback API server.
# The code is services/node-agent/mockaccel_node_agent/bench.py (linted and
# type-checked with the service); this only provisions and runs it. A .py file
# here would be unowned by any Pants target and fail `pants tailor --check ::`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
env_file=$(tools/provision/all.sh)
# shellcheck disable=SC1090
. "$env_file"
exec ./pants run tools/bench/node_agent_bench.py "$@"
