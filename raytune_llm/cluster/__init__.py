"""Running raytune-llm on Kubernetes with KubeRay: manifests rendered from a config, and checked.

    raytune-llm k8s examples/train_lora/llama3_lora_sft_ray.yaml --kind rayjob | kubectl apply -f -

``render`` turns a config into the ConfigMap holding it and the RayJob or RayService that runs it;
``check_text`` checks manifests against the KubeRay v1.7.0 CRDs (strictly: unknown fields are
errors) and the rules the operator enforces. See docs/cluster.md.
"""

from .render import DEFAULT_IMAGE, DEFAULT_PVC, KINDS, Options, Rendered, render, to_text
from .rules import check_document, check_text
from .schema import Problem

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_PVC",
    "KINDS",
    "Options",
    "Problem",
    "Rendered",
    "check_document",
    "check_text",
    "render",
    "to_text",
]
