"""Check Kubernetes manifests against the KubeRay v1.7.0 CRD schemas, as strictly as kubectl does.

A CRD's OpenAPI schema leaves objects open: a misspelt field (``rayVerison``) validates under plain
JSON Schema and is silently dropped by the API server. kubectl's strict field validation refuses
it, so the schemas here are tightened the same way: every object schema that lists its properties
and neither allows additional ones nor preserves unknown fields gets ``additionalProperties:
false``. As the API server does, null values are pruned and the schema's defaults are filled in
before validating. ConfigMap and PersistentVolumeClaim (the other kinds raytune-llm's manifests
use) get schemas of their own.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config.errors import did_you_mean

CRD_DIR = Path(__file__).with_name("crds")
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
"""KubeRay kind → its CRD file in ``crds/`` (see crds/PROVENANCE.md)."""

API_VERSIONS = {"RayCluster": "ray.io/v1", "RayJob": "ray.io/v1", "RayService": "ray.io/v1"}
API_VERSIONS |= {"ConfigMap": "v1", "PersistentVolumeClaim": "v1"}
"""Every kind that can be checked, with the apiVersion it must use."""

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

OBJECT_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": "string"},
        "deletionTimestamp": {"type": "string"},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "selfLink": {"type": "string"},
    },
}
"""Kubernetes ObjectMeta: the CRDs leave ``metadata`` as a bare object; the API server knows it."""

CONFIG_MAP: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": OBJECT_META,
        "data": _STRING_MAP,
        "binaryData": _STRING_MAP,
        "immutable": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest.

    Attributes:
        resource: which document: ``RayJob llama3-sft`` (or ``document 2`` without a name).
        path: the field, dotted: ``spec.rayClusterSpec.rayVerison``; empty for the document.
        message: what is wrong and, where it can tell, what would be valid.
    """

    resource: str
    path: str
    message: str

    def render(self) -> str:
        return f"{self.resource}: {self.path or '<document>'}: {self.message}"


def _read_yaml(path: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 0.2 s instead of 3 s
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


def crd_schema(kind: str) -> dict[str, Any]:
    """The ``v1`` openAPIV3Schema of a KubeRay kind, exactly as its CRD file has it."""
    crd = _read_yaml(CRD_DIR / CRD_FILES[kind])
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def tighten(schema: Any) -> Any:
    """A copy of ``schema`` in which objects with listed properties allow no others."""
    if isinstance(schema, list):
        return [tighten(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: tighten(v) for k, v in schema.items()}
    if (
        out.get("type") == "object"
        and isinstance(out.get("properties"), dict)
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def strict_schema(kind: str) -> dict[str, Any]:
    """The schema a manifest of ``kind`` is checked against (cached: CRDs take ~0.3 s to read)."""
    if kind == "ConfigMap":
        return tighten(CONFIG_MAP)
    if kind == "PersistentVolumeClaim":
        # The pod template's ephemeral volumeClaimTemplate spells out the PVC spec in full.
        volume = _pod_spec(crd_schema("RayCluster"))["volumes"]["items"]["properties"]
        claim = volume["ephemeral"]["properties"]["volumeClaimTemplate"]["properties"]["spec"]
        return tighten(
            {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": OBJECT_META,
                    "spec": claim,
                },
                "required": ["spec"],
            }
        )
    schema = copy.deepcopy(crd_schema(kind))
    schema["properties"]["metadata"] = OBJECT_META
    return tighten(schema)


def _pod_spec(cluster_crd: dict[str, Any]) -> dict[str, Any]:
    head = cluster_crd["properties"]["spec"]["properties"]["headGroupSpec"]
    return head["properties"]["template"]["properties"]["spec"]["properties"]


@functools.cache
def _validator(kind: str) -> Any:
    import jsonschema

    schema = strict_schema(kind)
    return jsonschema.Draft7Validator(schema)


def prune_nulls(value: Any) -> Any:
    """Drop mapping entries whose value is null, as the API server prunes them."""
    if isinstance(value, dict):
        return {k: prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_nulls(v) for v in value]
    return value


def fill_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Set the schema's defaults in ``value`` (in place) where a field is absent; return it."""
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                fill_defaults(value[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in set(value) - set(schema.get("properties", {})):
                fill_defaults(value[name], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            fill_defaults(item, schema["items"])
    return value


def dotted(path: Any) -> str:
    """``spec.workerGroupSpecs[0].template`` from a jsonschema path deque."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(error: Any) -> Iterator[tuple[str, str]]:
    """(path, message) pairs for one jsonschema error, in words a manifest's author can act on."""
    path = dotted(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = list(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(known)):
            yield (
                _join(path, key),
                "unknown field"
                + did_you_mean(key, known)
                + (f"; known fields: {', '.join(sorted(known))}" if len(known) <= 12 else ""),
            )
    elif error.validator == "anyOf" and {"integer", "string"} <= {
        s.get("type") for s in error.validator_value
    }:
        yield (
            path,
            f"expected an integer or a quantity such as '8' or '16Gi', got {error.instance!r}",
        )
    elif error.validator == "pattern":
        yield path, f"{error.instance!r} is not a valid quantity (e.g. 8, '500m', '16Gi')"
    else:
        yield path, error.message


def schema_problems(kind: str, doc: dict[str, Any], resource: str) -> list[Problem]:
    """Problems of a pruned, defaulted document against the strict schema of its kind."""
    errors = sorted(_validator(kind).iter_errors(doc), key=lambda e: list(map(str, e.path)))
    seen: set[tuple[str, str]] = set()
    out = []
    for error in errors:
        for path, message in _describe(error):
            if (path, message) not in seen:
                seen.add((path, message))
                out.append(Problem(resource, path, message))
    return out


DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
