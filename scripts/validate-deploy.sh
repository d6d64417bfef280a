#!/usr/bin/env bash
# Validates pgveil's deployment artifacts with the tools of their ecosystems:
#   Dockerfile                      hadolint
#   docker-compose.yml              docker-compose config (no daemon needed)
#   deploy/k8s (base and overlays)  kubectl kustomize, then kubernetes-validate --strict for the
#                                   built-in kinds; the ServiceMonitor CRD has no schema there,
#                                   so it is checked against the Service it must select
#   deploy/prometheus               promtool check rules, promtool test rules
#   YAML files                      yamllint
#   scripts/*.sh                    shellcheck
# The dashboard's and alerts' metric names are checked against a live pgveil by
# tests/deploy_artifacts.rs (cargo test), not here.
#
# Tools come from scripts/install-validators.sh. Exits non-zero when a validator finds a
# problem. A validator that could not be installed is reported as SKIPPED, loudly, and does
# not fail the run (PGVEIL_VALIDATORS_REQUIRED=1 makes that fatal too).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

BIN=$(scripts/install-validators.sh | tail -n1)
export PATH="$BIN:$PATH"
failed=0
skipped=""
pass() { echo "validate-deploy: ok: $*"; }
fail() { echo "validate-deploy: FAILED: $*" >&2; failed=1; }
have() {
    if [ -x "$BIN/$1" ] || command -v "$1" >/dev/null 2>&1; then return 0; fi
    echo "validate-deploy: SKIPPED: $1 is not installed (see scripts/install-validators.sh output above)" >&2
    skipped="$skipped $1"
    return 1
}
run() { # run DESCRIPTION CMD...: quiet on success, full output on failure
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$what"; else fail "$what"; echo "$out" >&2; fi
}

if have hadolint; then
    run "hadolint Dockerfile" hadolint --no-color --failure-threshold warning Dockerfile
fi

if have docker-compose; then
    run "docker-compose config" docker-compose -f docker-compose.yml config -q
fi

if have yamllint; then
    run "yamllint" yamllint -s -c .yamllint.yml docker-compose.yml deploy
fi

if have shellcheck; then
    run "shellcheck scripts" shellcheck -S warning scripts/*.sh
fi

if have promtool; then
    run "promtool check rules" promtool check rules deploy/prometheus/pgveil-alerts.yml
    run "promtool test rules" sh -c 'cd deploy/prometheus && promtool test rules pgveil-alerts.test.yml'
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if have kubectl; then
    for k in deploy/k8s/base deploy/k8s/overlays/*/; do
        k=${k%/}
        name=$(echo "$k" | tr '/' '_')
        if ! kubectl kustomize "$k" >"$tmp/$name.yaml" 2>"$tmp/$name.err"; then
            fail "kubectl kustomize $k"; cat "$tmp/$name.err" >&2; continue
        fi
        pass "kubectl kustomize $k"
        if have kubernetes-validate; then
            # Every built-in kind must pass strict validation (unknown fields rejected); the
            # only kind allowed to lack a schema is the ServiceMonitor CRD.
            out=$(kubernetes-validate --strict --no-warn "$tmp/$name.yaml" 2>&1); rc=$?
            warn=$(kubernetes-validate --strict "$tmp/$name.yaml" 2>&1 | grep "Couldn't find schema" | grep -v "kind ServiceMonitor with api version monitoring.coreos.com/v1")
            if [ "$rc" != 0 ] || [ -n "$warn" ]; then
                fail "kubernetes-validate --strict $k"; echo "$out" "$warn" >&2
            else
                pass "kubernetes-validate --strict $k"
            fi
            run "ServiceMonitor selects the metrics port of exactly one Service ($k)" \
                "$(dirname "$(readlink -f "$BIN/kubernetes-validate")")/python" \
                scripts/check-servicemonitor.py "$tmp/$name.yaml"
        fi
    done
    # The validator must reject a broken manifest, or its passes above mean nothing.
    if have kubernetes-validate; then
        printf 'apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\nspec:\n  replica: 1\n' >"$tmp/bad.yaml"
        if kubernetes-validate --strict --quiet "$tmp/bad.yaml" >/dev/null 2>&1; then
            fail "kubernetes-validate accepted a StatefulSet with an unknown field"
        else
            pass "kubernetes-validate rejects a broken manifest"
        fi
    fi
fi

if [ -n "$skipped" ]; then
    echo "validate-deploy: WARNING: not validated, tools missing:$skipped" >&2
    [ "${PGVEIL_VALIDATORS_REQUIRED:-0}" = 1 ] && failed=1
fi
if [ "$failed" != 0 ]; then
    echo "validate-deploy: deployment artifacts FAILED validation" >&2
    exit 1
fi
echo "validate-deploy: all deployment artifacts valid"
