"""A small Kustomize of our own: what `kubectl kustomize` renders from deploy/k8s, with no
binary (PyPI has no Kustomize; `kubectl` is not on every machine).

It knows the fields deploy/k8s uses and refuses any other, so it never renders something
else in silence: `resources` (files and folders), `namespace`, `images`, `secretGenerator`
(`envs`, with `options.labels` and `options.disableNameSuffixHash`) and `patches` (strategic
merge patches from files, matched by kind and name, or by a `target` of a kind and a label
selector of `=`, `==` and `!=` terms, as deploy/README.md's agent sandbox patch is). Two
differences from Kustomize, both
on purpose: a generated Secret keeps its plain name (Kustomize appends a hash of its content
and rewrites the references to it), and an env file that is missing is read from its
`.example` beside it (the real ones hold secrets and are git-ignored).
`tests/deploy/test_kubernetes.py` compares the two where `kubectl` is installed.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["KustomizeError", "containers_of", "pod_spec", "read_env_file", "render"]

Obj = dict[str, Any]

_KNOWN = {"apiVersion", "kind", "resources", "namespace", "images", "secretGenerator", "patches"}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}
"""Lists that a strategic merge patch merges item by item (Kubernetes' patch merge keys);
every other list is replaced whole, as Kustomize does."""


class KustomizeError(ValueError):
    """A kustomization this renderer does not support, or that is wrong."""


def render(folder: Path) -> list[Obj]:
    """The objects `folder`'s kustomization.yaml renders to."""
    spec = _load_one(folder / "kustomization.yaml")
    unknown = set(spec) - _KNOWN
    if unknown:
        raise KustomizeError(f"{folder}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        objects += render(path) if path.is_dir() else _load_all(path)
    objects += [_secret(folder, gen) for gen in spec.get("secretGenerator", [])]
    for patch in spec.get("patches", []):
        _apply_patch(objects, folder, patch)
    for image in spec.get("images", []):
        _set_image(objects, image)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    _check_unique(objects, folder)
    return objects


def _load_one(path: Path) -> Obj:
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise KustomizeError(f"{path}: not a YAML mapping")
    return loaded


def _load_all(path: Path) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= set(doc):
            raise KustomizeError(f"{path}: a document is not a Kubernetes object")
    return docs


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines, as Kustomize reads an `envs` file (blank lines and `#` comments
    skipped, the value verbatim after the first `=`); `path`.example when `path` is missing."""
    if not path.exists():
        path = path.with_name(path.name + ".example")
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key:
            raise KustomizeError(f"{path}:{number}: not KEY=VALUE")
        found[key] = value
    return found


def _secret(folder: Path, gen: Obj) -> Obj:
    unknown = set(gen) - {"name", "envs", "options"}
    options = gen.get("options", {})
    unknown |= set(options) - {"labels", "disableNameSuffixHash"}
    if unknown:
        raise KustomizeError(f"{folder}: unsupported secretGenerator fields {sorted(unknown)}")
    data: dict[str, str] = {}
    for env in gen.get("envs", []):
        data.update(read_env_file(folder / env))
    metadata: Obj = {"name": gen["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _apply_patch(objects: list[Obj], folder: Path, patch: Obj) -> None:
    if "path" not in patch or set(patch) - {"path", "target"}:
        raise KustomizeError(f"{folder}: only patches from files are supported, got {patch}")
    body = _load_one(folder / patch["path"])
    if "target" in patch:
        targets = [o for o in objects if _targeted(o, patch["target"])]
        if not targets:
            raise KustomizeError(f"{patch['path']}: its target matches no object")
    else:
        targets = [
            o
            for o in objects
            if o["kind"] == body["kind"] and o["metadata"]["name"] == body["metadata"]["name"]
        ]
        if len(targets) != 1:
            raise KustomizeError(f"{patch['path']}: matches {len(targets)} objects, not one")
    for target in targets:
        # With a target, the patch's own name is a placeholder (Kustomize keeps the object's).
        name = {"name": target["metadata"]["name"]}
        merged = _merge(target, {**body, "metadata": {**body["metadata"], **name}})
        target.clear()
        target.update(merged)


def _targeted(obj: Obj, target: Obj) -> bool:
    """Whether a patch's `target` (a `kind` and a `labelSelector`) selects `obj`."""
    unknown = set(target) - {"kind", "labelSelector"}
    if unknown:
        raise KustomizeError(f"unsupported patch target fields {sorted(unknown)}")
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    labels = obj["metadata"].get("labels", {})
    for term in str(target.get("labelSelector", "")).split(","):
        if not term.strip():
            continue
        key, sep, value = term.partition("!=")
        if sep:
            if labels.get(key.strip()) == value.strip():
                return False
            continue
        key, sep, value = term.replace("==", "=").partition("=")
        if not sep or " " in key.strip():
            raise KustomizeError(f"unsupported label selector term {term!r}")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge patch, for the directives-free patches deploy/k8s has."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if key.startswith("$"):
                raise KustomizeError(f"patch directive {key} is not supported")
            merged[key] = _merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in _MERGE_KEYS:
        # Kustomize's order: the patch's items (merged into the base's of the same key)
        # first, then the base's other items.
        key = _MERGE_KEYS[field]
        by_key = {b[key]: b for b in base}
        patched = {item[key] for item in patch}
        merged_list = [
            _merge(by_key[item[key]], item) if item[key] in by_key else copy.deepcopy(item)
            for item in patch
        ]
        return merged_list + [b for b in base if b[key] not in patched]
    return copy.deepcopy(patch)


def _set_image(objects: list[Obj], image: Obj) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise KustomizeError(f"unsupported image fields in {image}")
    for obj in objects:
        for container in containers_of(obj):
            name, _, _tag = container["image"].partition("@")[0].rpartition(":")
            if not name or "/" in _tag:  # no tag: the colon, if any, was a registry port
                name = container["image"].partition("@")[0]
            if name == image["name"]:
                new = image.get("newName", name)
                container["image"] = f"{new}:{image['newTag']}" if "newTag" in image else new


def pod_spec(obj: Obj) -> Obj | None:
    """The pod template's spec of a workload (Deployment, StatefulSet, Job), else None."""
    template = obj.get("spec", {}).get("template")
    return template["spec"] if isinstance(template, dict) else None


def containers_of(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _check_unique(objects: list[Obj], folder: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        ident = (obj["kind"], obj["metadata"]["name"])
        if ident in seen:
            raise KustomizeError(f"{folder}: {ident} is rendered twice")
        seen.add(ident)
