#!/usr/bin/env bash
# Runs pgveil's whole test suite (the README's test command; .ci/run calls exactly this).
#
# Installs the PostgreSQL tools first if they are missing (scripts/install-deps.sh) and
# nats-server for the audit shipping tests (scripts/install-nats.sh), then validates the
# deployment artifacts (scripts/validate-deploy.sh, which installs its own tools). The
# integration tests start their own throwaway PostgreSQL and proxy on free ports, so nothing
# else needs to be running. Extra arguments go to `cargo test` (e.g. a test-name filter).
# PGVEIL_NEXTEST=1 uses cargo-nextest instead when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/install-nats.sh
# Client drivers for tests/drivers.rs (repo-local under target/drivers); one that cannot be
# installed is reported as absent by the matrix, not failed.
scripts/install-drivers.sh || echo "install-drivers: some drivers could not be installed; tests/drivers.rs reports them as absent"
# Dockerfile, compose, Kubernetes, Prometheus rules: fails the run on any finding.
scripts/validate-deploy.sh

if [ "${PGVEIL_NEXTEST:-0}" = 1 ] && cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --all-targets "$@"
fi
exec cargo test --all-targets "$@"
