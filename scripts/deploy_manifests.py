#!/usr/bin/env python3
"""Renders every kustomization under deploy/kubernetes/ and validates what it makes.

Rendering covers what our kustomizations use (resources, `labels` pairs, RFC 6902 patches
inline or from a file, targeted by kind and name), applied with the `jsonpatch` library; where
`kubectl` is on the machine, its `kubectl kustomize` output must equal ours. Every rendered
object is validated strictly by `kubernetes-validate` against the oldest and the newest
Kubernetes versions we support; kinds from CRDs (the Prometheus operator's ServiceMonitor) have
no schema there and are checked for their required fields instead. Exit 1 on any failure.
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import jsonpatch
import kubernetes_validate
import yaml

KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CRD_REQUIRED = {("monitoring.coreos.com/v1", "ServiceMonitor"): ["selector", "endpoints"]}


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def matches(obj, target):
    meta = obj.get("metadata", {})
    return all(
        [
            target.get("kind", obj["kind"]) == obj["kind"],
            target.get("name", meta.get("name")) == meta.get("name"),
        ]
    )


def apply_patch(objs, entry, base):
    text = entry["patch"] if "patch" in entry else (base / entry["path"]).read_text()
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise SystemExit(f"{base}: only RFC 6902 (list) patches are supported")
    hits = [i for i, o in enumerate(objs) if matches(o, entry.get("target", {}))]
    if not hits:
        raise SystemExit(f"{base}: patch target {entry.get('target')} matches nothing")
    for i in hits:
        objs[i] = jsonpatch.apply_patch(objs[i], ops)


def render(directory):
    """The objects a kustomization directory makes."""
    base = Path(directory)
    kust = load_docs(base / "kustomization.yaml")[0]
    objs = []
    for res in kust.get("resources", []):
        path = base / res
        objs += render(path) if path.is_dir() else load_docs(path)
    for entry in kust.get("patches", []):
        apply_patch(objs, entry, base)
    for group in kust.get("labels", []):
        for obj in objs:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    return objs


def key(obj):
    return (obj["kind"], obj["metadata"]["name"])


def compare_with_kubectl(directory, ours):
    if shutil.which("kubectl") is None:
        return "kubectl not here: rendering not cross-checked"
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    theirs = sorted((d for d in yaml.safe_load_all(out) if d), key=key)
    if theirs != sorted(ours, key=key):
        raise SystemExit(f"{directory}: our rendering differs from kubectl kustomize's")
    return "same as kubectl kustomize"


def validate(obj):
    """Problems with one object (empty when valid)."""
    kind = (obj.get("apiVersion"), obj.get("kind"))
    if kind in CRD_REQUIRED:
        spec = obj.get("spec", {})
        return [f"{kind[1]}: spec.{f} is missing" for f in CRD_REQUIRED[kind] if f not in spec]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{key(obj)} on {version}: {e.message} at {list(e.path)}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="deploy/kubernetes")
    args = parser.parse_args()
    dirs = sorted(p.parent for p in Path(args.root).rglob("kustomization.yaml"))
    failed = False
    for directory in dirs:
        objs = render(directory)
        cross = compare_with_kubectl(directory, objs)
        problems = [p for obj in objs for p in validate(obj)]
        kinds = ", ".join(f"{k}/{n}" for k, n in map(key, objs))
        status = "FAIL" if problems else "ok"
        print(f"{status} {directory}: {len(objs)} objects ({kinds}); {cross}")
        for p in problems:
            print(f"  {p}")
        failed |= bool(problems)
    print(f"validated strictly against Kubernetes {' and '.join(KUBERNETES_VERSIONS)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
