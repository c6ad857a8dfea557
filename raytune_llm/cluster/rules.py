"""What the KubeRay operator refuses that its CRD schemas cannot say, and the check of a manifest.

The rules follow KubeRay v1.7.0's ``ray-operator/controllers/ray/utils/validation.go``: names are
DNS-1035 labels of at most 53 characters for a RayCluster and 47 for a RayJob or RayService (the
operator appends 6 characters to name their clusters); minReplicas ≤ replicas ≤ maxReplicas;
submissionMode is one of four modes; and the smaller rules below. The API server's own name rule
(a DNS-1123 subdomain) holds for ConfigMaps and PersistentVolumeClaims.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import yaml

from .schema import (
    API_VERSIONS,
    DNS_1035,
    DNS_1123_SUBDOMAIN,
    Problem,
    fill_defaults,
    prune_nulls,
    schema_problems,
    strict_schema,
)

MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}
"""Longest name the operator accepts per kind (utils.MaxRayClusterNameLength and friends)."""

SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
RAYSERVICE_UPGRADES = ("NewClusterWithIncrementalUpgrade", "NewCluster", "None")
MIN_AUTH_RAY_VERSION = (2, 52, 0)

Rule = Iterator[tuple[str, str]]
"""A rule yields (path, message) for each violation."""


def name_rules(kind: str, meta: dict[str, Any]) -> Rule:
    """The name rules of a kind: the operator's for Ray kinds, the API server's for others."""
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            yield "metadata.name", "required"
        return
    if kind in MAX_NAME:
        if len(name) > MAX_NAME[kind]:
            yield (
                "metadata.name",
                f"{name!r} has {len(name)} characters; a {kind} name may have at most "
                f"{MAX_NAME[kind]}",
            )
        if not DNS_1035.fullmatch(name):
            yield (
                "metadata.name",
                f"{name!r} is not a DNS-1035 label: lower-case letters, digits and '-', starting "
                "with a letter and ending with a letter or digit",
            )
    elif len(name) > 253 or not DNS_1123_SUBDOMAIN.fullmatch(name):
        yield (
            "metadata.name",
            f"{name!r} is not a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'",
        )


def _group_rules(path: str, group: dict[str, Any], given: dict[str, Any], auto: bool) -> Rule:
    containers = group.get("template", {}).get("spec", {}).get("containers") or []
    if not containers:
        yield f"{path}.template.spec.containers", "needs at least one container (the Ray one first)"
    params = group.get("rayStartParams") or {}
    if group.get("resources") and any(
        params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")
    ):
        yield f"{path}.resources", "resources are set both here and in rayStartParams; use one"
    if "labels" in params:
        yield f"{path}.rayStartParams.labels", "not supported; use the group's labels field"
    if "groupName" not in group:  # the head group
        return
    low, high, replicas = group["minReplicas"], group["maxReplicas"], group["replicas"]
    if not auto and ("minReplicas" not in given or "maxReplicas" not in given):
        yield path, "set both minReplicas and maxReplicas when autoscaling is disabled"
    if low < 0 or high < 0:
        yield path, f"replica bounds must be >= 0, got minReplicas {low}, maxReplicas {high}"
    if low > high:
        yield f"{path}.minReplicas", f"minReplicas {low} is greater than maxReplicas {high}"
    elif "replicas" in given and not low <= replicas <= high:
        yield (
            f"{path}.replicas",
            f"replicas {replicas} is outside minReplicas..maxReplicas ({low}..{high})",
        )


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in text.split(".")[:3])
    except ValueError:
        return None


def cluster_rules(path: str, spec: dict[str, Any], given: dict[str, Any]) -> Rule:
    """Rules of a RayCluster spec at ``path`` (also a RayJob's or RayService's cluster)."""
    auto = bool(spec.get("enableInTreeAutoscaling"))
    yield from _group_rules(f"{path}.headGroupSpec", spec["headGroupSpec"], {}, auto)
    names: set[str] = set()
    given_groups = given.get("workerGroupSpecs") or []
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        where = f"{path}.workerGroupSpecs[{i}]"
        name = group.get("groupName", "")
        if name in names:
            yield f"{where}.groupName", f"{name!r} is used by another worker group"
        names.add(name)
        raw = given_groups[i] if i < len(given_groups) else {}
        yield from _group_rules(where, group, raw, auto)
    if (spec.get("authOptions") or {}).get("mode") == "token":
        version = _version(str(spec.get("rayVersion", "")))
        if version is None or version < MIN_AUTH_RAY_VERSION:
            yield (
                f"{path}.rayVersion",
                "authOptions.mode token needs rayVersion 2.52.0 or later, got "
                f"{spec.get('rayVersion')!r}",
            )


def _yaml_rule(path: str, text: str | None, what: str) -> Rule:
    if text:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            yield path, f"{what} is not valid YAML: {str(err).splitlines()[0]}"
            return
        if not isinstance(value, dict):
            yield path, f"{what} must be a YAML mapping, got {type(value).__name__}"


def job_rules(path: str, spec: dict[str, Any], given: dict[str, Any]) -> Rule:
    """Rules of a RayJob spec (at ``path``: spec)."""
    mode = spec.get("submissionMode")
    if mode not in SUBMISSION_MODES:
        yield "spec.submissionMode", f"got {mode!r}; valid: {', '.join(SUBMISSION_MODES)}"
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        yield "spec.suspend", "a RayJob can be suspended only with shutdownAfterJobFinishes: true"
    if not spec.get("shutdownAfterJobFinishes") and spec.get("ttlSecondsAfterFinished", 0) > 0:
        yield "spec.ttlSecondsAfterFinished", "needs shutdownAfterJobFinishes: true"
    if spec.get("ttlSecondsAfterFinished", 0) < 0:
        yield "spec.ttlSecondsAfterFinished", "must be >= 0"
    if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
        yield "spec.activeDeadlineSeconds", "must be > 0"
    if spec.get("backoffLimit", 0) < 0:
        yield "spec.backoffLimit", "must be >= 0"
    if mode == "InteractiveMode" and spec.get("backoffLimit", 0) > 0:
        yield "spec.backoffLimit", "InteractiveMode allows no retries (backoffLimit 0)"
    if mode == "SidecarMode" and (spec.get("submitterPodTemplate") or spec.get("submitterConfig")):
        yield "spec.submissionMode", "SidecarMode takes no submitterPodTemplate or submitterConfig"
    selector = spec.get("clusterSelector")
    if "rayClusterSpec" in spec:
        yield from cluster_rules(
            "spec.rayClusterSpec", spec["rayClusterSpec"], given.get("rayClusterSpec", {})
        )
    elif not selector:
        yield "spec", "set rayClusterSpec (a new cluster) or clusterSelector (an existing one)"
    if mode not in ("InteractiveMode",) and not spec.get("entrypoint"):
        yield "spec.entrypoint", f"required in {mode}: the command the job runs"
    yield from _yaml_rule("spec.runtimeEnvYAML", spec.get("runtimeEnvYAML"), "runtimeEnvYAML")


def service_rules(path: str, spec: dict[str, Any], given: dict[str, Any]) -> Rule:
    """Rules of a RayService spec (at ``path``: spec)."""
    yield from cluster_rules(
        "spec.rayClusterConfig", spec["rayClusterConfig"], given.get("rayClusterConfig", {})
    )
    head_service = spec["rayClusterConfig"]["headGroupSpec"].get("headService") or {}
    if (head_service.get("metadata") or {}).get("name"):
        yield (
            "spec.rayClusterConfig.headGroupSpec.headService.metadata.name",
            "must not be set in a RayService",
        )
    upgrade = (spec.get("upgradeStrategy") or {}).get("type")
    if upgrade is not None and upgrade not in RAYSERVICE_UPGRADES:
        yield (
            "spec.upgradeStrategy.type",
            f"got {upgrade!r}; valid: {', '.join(RAYSERVICE_UPGRADES)}",
        )
    yield from _yaml_rule("spec.serveConfigV2", spec.get("serveConfigV2"), "serveConfigV2")


def check_document(doc: Any, index: int = 1) -> list[Problem]:
    """Every problem of one manifest: its kind, the strict schema, then the operator's rules."""
    if not isinstance(doc, dict):
        return [Problem(f"document {index}", "", "expected a mapping (a Kubernetes object)")]
    doc = prune_nulls(doc)
    kind = doc.get("kind")
    name = (
        (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    )
    resource = (
        f"{kind} {name}" if kind and name else f"document {index}" + (f" ({kind})" if kind else "")
    )
    if kind not in API_VERSIONS:
        return [
            Problem(
                resource,
                "kind",
                f"cannot check kind {kind!r}; known: {', '.join(API_VERSIONS)}",
            )
        ]
    problems = []
    if doc.get("apiVersion") != API_VERSIONS[kind]:
        problems.append(
            Problem(
                resource,
                "apiVersion",
                f"got {doc.get('apiVersion')!r}; a {kind} is {API_VERSIONS[kind]!r}",
            )
        )
    schema = strict_schema(kind)
    filled = fill_defaults(prune_nulls(doc), schema)
    problems += schema_problems(kind, filled, resource)
    rules: list[tuple[str, str]] = []
    spec, given = filled.get("spec") or {}, doc.get("spec") or {}
    checks = {"RayCluster": cluster_rules, "RayJob": job_rules, "RayService": service_rules}
    for rule in [
        lambda: name_rules(kind, filled.get("metadata") or {}),
        lambda: checks[kind]("spec", spec, given) if kind in checks else (),
    ]:
        # A field of the wrong shape breaks a rule: the schema has reported it already.
        with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError):
            rules += list(rule())
    return problems + [Problem(resource, path, message) for path, message in rules]


def check_text(text: str) -> tuple[int, list[Problem]]:
    """Check every document of a YAML stream; return how many there were and their problems."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        return 0, [Problem("YAML", "", str(err).replace("\n", " "))]
    problems = []
    for i, doc in enumerate(docs, 1):
        problems += check_document(doc, i)
    return len(docs), problems
