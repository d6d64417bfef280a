"""Checks the ServiceMonitor (a Prometheus Operator CRD, absent from kubernetes-validate's
built-in schemas) in a rendered kustomize output against what it must match: its selector
picks exactly one Service of the same output, and every endpoint names a port of it.

Usage: python check-servicemonitor.py RENDERED.yaml   (exit 1 with the reason on a mismatch)
"""
import sys

import yaml


def main(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    monitors = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    services = [d for d in docs if d.get("kind") == "Service"]
    if len(monitors) != 1:
        return f"expected one ServiceMonitor, found {len(monitors)}"
    sm = monitors[0]
    if sm.get("apiVersion") != "monitoring.coreos.com/v1":
        return f"unexpected apiVersion {sm.get('apiVersion')}"
    spec = sm.get("spec") or {}
    unknown = set(spec) - {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    if unknown:
        return f"unexpected ServiceMonitor spec fields {sorted(unknown)}"
    want = (spec.get("selector") or {}).get("matchLabels") or {}
    if not want:
        return "ServiceMonitor selects nothing (empty matchLabels)"
    picked = [
        s for s in services
        if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in want.items())
    ]
    if len(picked) != 1:
        names = [s["metadata"]["name"] for s in picked]
        return f"selector {want} matches {len(picked)} Services {names}; exactly one wanted"
    ports = {p.get("name") for p in picked[0]["spec"].get("ports", [])}
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        return "ServiceMonitor has no endpoints"
    for ep in endpoints:
        if ep.get("port") not in ports:
            return f"endpoint port {ep.get('port')!r} is not a port of {picked[0]['metadata']['name']} {sorted(ports)}"
        if ep.get("path", "/metrics") != "/metrics":
            return f"endpoint path {ep.get('path')!r}: pgveil serves /metrics"
    return None


if __name__ == "__main__":
    problem = main(sys.argv[1])
    if problem:
        print(f"check-servicemonitor: {problem}", file=sys.stderr)
        sys.exit(1)
