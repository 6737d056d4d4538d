"""Renders a kustomization the way `kustomize build` does, for the subset deploy/kubernetes uses
(resources, strategic-merge patches, images), so manifests can be checked where kustomize is not
installed (CI). With kustomize at hand, `kubectl kustomize deploy/kubernetes/overlays/gpu` gives
the same documents.

    python deploy/render.py deploy/kubernetes/overlays/gpu > nmt-serving.yaml
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

Document = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as Kubernetes does it for these manifests: maps merge key by key, lists of
    named maps (containers, env, ports) merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in base + patch):
        merged = [copy.deepcopy(item) for item in base]
        names = [item["name"] for item in merged]
        for item in patch:
            if item["name"] in names:
                index = names.index(item["name"])
                merged[index] = merge(merged[index], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def key(document: Document) -> tuple[str, str]:
    return document["kind"], document["metadata"]["name"]


def set_images(document: Any, images: list[dict[str, str]]) -> Any:
    if isinstance(document, dict):
        result = {k: set_images(v, images) for k, v in document.items()}
        if isinstance(result.get("image"), str):
            name = result["image"].split(":")[0]
            for image in images:
                if image["name"] == name:
                    result["image"] = f"{image.get('newName', name)}:{image.get('newTag', 'latest')}"
        return result
    if isinstance(document, list):
        return [set_images(item, images) for item in document]
    return document


def build(directory: Path) -> list[Document]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise ValueError(f"{directory}/kustomization.yaml uses {sorted(unsupported)}, which this renderer does not support: use kustomize")
    documents: list[Document] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        documents += build(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch_entry in kustomization.get("patches", []):
        for patch in yaml.safe_load_all((directory / patch_entry["path"]).read_text()):
            targets = [i for i, d in enumerate(documents) if key(d) == key(patch)]
            if not targets:
                raise ValueError(f"{patch_entry['path']}: no resource {key(patch)} to patch")
            for index in targets:
                documents[index] = merge(documents[index], patch)
    return [set_images(d, kustomization.get("images", [])) for d in documents]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(build(Path(argv[0])), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
