#!/usr/bin/env bash
# pgveil's main job on an embedded default: installs the PostgreSQL tools if they are missing
# (scripts/install-deps.sh), then runs `pgveil demo`, which starts a throwaway PostgreSQL, loads
# sample customers through the proxy (encrypted at rest) and prints what each role sees and
# the psql commands to connect. Ctrl-C stops it and removes everything it created.
# Extra arguments go to `pgveil demo` (e.g. --port 7432, --duration 30, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
exec cargo run --release -- demo "$@"
