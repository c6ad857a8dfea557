"""KubeRay manifests: cluster/'s and rendered ones validate strictly; typos and bad values caught.

The CRDs are KubeRay v1.7.0's (raytune_llm/cluster/crds/PROVENANCE.md); no cluster is needed.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from raytune_llm.cli.main import main
from raytune_llm.cluster import Options, check_document, check_text, render, to_text
from raytune_llm.cluster.schema import CRD_DIR, CRD_FILES
from raytune_llm.config import load_config

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted(p for p in (ROOT / "cluster").glob("*.yaml") if p.name != "vm-cluster.yaml")
RAY_EXAMPLE = "examples/train_lora/llama3_lora_sft_ray.yaml"
DEMO = "examples/demo/tiny_lora_sft.yaml"
BLOBS = {  # `git hash-object` of KubeRay v1.7.0's files, as PROVENANCE.md records them
    "ray.io_rayclusters.yaml": "ff0be58ada3bd457605eff1f258c16df21e61e21",
    "ray.io_rayjobs.yaml": "c7d3f081af8cf08c256a8c33a0c3b6ea28b816a0",
    "ray.io_rayservices.yaml": "7ee63d6ddd11237a5649e04b3a8db3c52074c867",
}


def rendered(path: str, kind: str = "rayjob", *overrides: str, **options) -> list[dict]:
    cfg = load_config(ROOT / path, overrides)
    return render(cfg, path, Options(kind=kind, **options)).documents


def problems_of(doc: dict) -> list[str]:
    return [p.render() for p in check_document(doc)]


def pod_config(docs: list[dict]) -> dict:
    (text,) = docs[0]["data"].values()
    return yaml.safe_load(text)


def test_crds_are_kuberay_v1_7_0_unmodified():
    for name in CRD_FILES.values():
        data = (CRD_DIR / name).read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert blob == BLOBS[name], name
    assert "v1.7.0" in (CRD_DIR / "PROVENANCE.md").read_text()


def test_cluster_has_the_promised_manifests():
    names = {p.name for p in (ROOT / "cluster").iterdir()}
    assert {"raycluster.yaml", "rayjob-train.yaml", "rayjob-tune.yaml", "rayservice.yaml"} <= names
    assert {"storage.yaml", "vm-cluster.yaml", "Dockerfile"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_in_cluster_validates(path):
    text = path.read_text()
    assert text.startswith("# kubectl apply -f cluster/"), "first line: the command that runs it"
    count, problems = check_text(text)
    assert count >= 1 and not problems, "\n".join(p.render() for p in problems)
    for doc in yaml.safe_load_all(text):  # and the config each ConfigMap carries is valid
        for name, config in (doc.get("data") or {}).items():
            verb = config.split()[2]
            assert config.startswith(f"# raytune-llm {verb} /config/{name}")
            load_config(values=yaml.safe_load(config))


def test_vm_cluster_launcher_yaml_validates_against_rays_schema():
    (schema,) = glob.glob(
        str(Path(jsonschema.__file__).parents[1] / "ray" / "autoscaler" / "ray-schema.json")
    )
    config = yaml.safe_load((ROOT / "cluster" / "vm-cluster.yaml").read_text())
    validator = jsonschema.Draft7Validator(json.loads(Path(schema).read_text()))
    assert [e.message for e in validator.iter_errors(config)] == []
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("kind", ["rayjob", "rayservice"])
@pytest.mark.parametrize("path", [RAY_EXAMPLE, DEMO])
def test_rendered_manifests_validate(path, kind, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(path)
    out = render(cfg, path, Options(kind=kind))
    text = to_text(out, ["raytune-llm", "k8s", path], Options(kind=kind))
    count, problems = check_text(text)
    assert count == 2 and not problems, problems
    run = out.documents[1]
    file = Path(path).name
    assert run["kind"] == {"rayjob": "RayJob", "rayservice": "RayService"}[kind]
    if kind == "rayjob":
        assert run["spec"]["entrypoint"] == f"raytune-llm train /config/{file}"
        assert run["spec"]["submissionMode"] == "K8sJobMode"
        assert run["spec"]["shutdownAfterJobFinishes"] is True
    else:
        app = yaml.safe_load(run["spec"]["serveConfigV2"])["applications"][0]
        assert app["import_path"] == "raytune_llm.serve.app:build_app"
        assert app["args"] == {"config": f"/config/{file}"}
    pod = pod_config(out.documents)
    assert pod["output_dir"].startswith("/mnt/shared/saves/")
    assert pod["dataset_dir"] == "/app/data" and "ray_address" not in pod
    assert load_config(values=pod).train.learning_rate == cfg.train.learning_rate


def test_a_misspelt_field_is_caught_with_its_path():
    job = rendered(DEMO)[1]
    assert problems_of(job) == []
    bad = copy.deepcopy(job)
    bad["spec"]["rayClusterSpec"]["rayVerison"] = bad["spec"]["rayClusterSpec"].pop("rayVersion")
    bad["spec"]["entryPoint"] = bad["spec"].pop("entrypoint")
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
        "resource"
    ] = {}
    found = "\n".join(problems_of(bad))
    assert "spec.rayClusterSpec.rayVerison: unknown field (did you mean 'rayVersion'?)" in found
    assert "spec.entryPoint: unknown field (did you mean 'entrypoint'?)" in found
    assert (
        "spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].resource: "
        "unknown field (did you mean 'resources'?)" in found
    )
    bad = copy.deepcopy(job)
    bad["metadata"]["lables"] = {}
    assert "metadata.lables: unknown field (did you mean 'labels'?)" in "\n".join(problems_of(bad))


def test_names_must_be_dns_1035_and_short_enough():
    job = rendered(DEMO)[1]
    for name, ok in [("a" * 47, True), ("a" * 48, False), ("Tiny_SFT", False), ("9lives", False)]:
        job["metadata"]["name"] = name
        assert (problems_of(job) == []) == ok, name
    job["metadata"]["name"] = "a" * 48
    assert "at most 47" in problems_of(job)[0]
    cluster = yaml.safe_load((ROOT / "cluster" / "raycluster.yaml").read_text())
    cluster["metadata"]["name"] = "a" * 53
    assert problems_of(cluster) == []
    cluster["metadata"]["name"] = "a" * 54
    assert "at most 53" in problems_of(cluster)[0]


def test_replica_bounds_submission_mode_and_quantities():
    job = rendered(DEMO)[1]
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group.update(minReplicas=3, maxReplicas=2)
    assert "minReplicas 3 is greater than maxReplicas 2" in problems_of(job)[0]
    group.update(minReplicas=1, maxReplicas=2, replicas=5)
    assert "replicas 5 is outside minReplicas..maxReplicas (1..2)" in problems_of(job)[0]
    group.update(replicas=2)
    job["spec"]["submissionMode"] = "K8sJob"
    assert "valid: K8sJobMode, HTTPMode, InteractiveMode, SidecarMode" in problems_of(job)[0]
    job["spec"]["submissionMode"] = "HTTPMode"
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits["cpu"] = 4  # int or string, as kubectl takes them
    assert problems_of(job) == []
    limits["cpu"] = "4 cores"
    assert "not a valid quantity" in problems_of(job)[0]


def test_resources_per_worker_size_the_worker_group():
    docs = rendered(
        RAY_EXAMPLE, "rayjob", "ray_num_workers=3", "resources_per_worker={GPU: 2, CPU: 8}"
    )
    (group,) = docs[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    assert group["rayStartParams"] == {"num-cpus": "9", "num-gpus": "2"}
    (container,) = group["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["limits"]["cpu"] == "9"  # 8 for the worker, 1 for Ray Data
    head = docs[1]["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert pod_config(docs)["resources_per_worker"] == {"GPU": 2, "CPU": 8}
    # STRICT_PACK keeps every worker on one node: one pod holds them all.
    docs = rendered(
        RAY_EXAMPLE, "rayjob", "ray_num_workers=3", "resources_per_worker={GPU: 2, CPU: 8}",
        "placement_strategy=STRICT_PACK",
    )  # fmt: skip
    (group,) = docs[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == 1 and group["rayStartParams"]["num-gpus"] == "6"


def test_pod_config_inlines_deepspeed_and_tune_runs_a_sweep(monkeypatch):
    monkeypatch.chdir(ROOT)
    docs = rendered("examples/train_lora/llama3_lora_sft_ds3.yaml")
    pod = pod_config(docs)
    expected = json.loads((ROOT / "examples/deepspeed/ds_z3_config.json").read_text())
    assert pod["deepspeed"] == expected
    docs = rendered("examples/tune/tiny_lora_sweep.yaml")
    assert docs[1]["spec"]["entrypoint"] == "raytune-llm tune /config/tiny_lora_sweep.yaml"
    (group,) = docs[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    trials = pod_config(docs)["tune"]["max_concurrent_trials"]
    assert group["replicas"] == trials * pod_config(docs).get("ray_num_workers", 1)


def test_cli_renders_checks_and_refuses_bad_input(tmp_path, capsys):
    assert main(["k8s", DEMO, "--kind", "rayservice", "--image", "reg.io/rl:1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# raytune-llm k8s {DEMO} --kind rayservice --image reg.io/rl:1")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(out)
    assert main(["k8s", "--check", str(manifest)]) == 0
    assert "2 manifests valid" in capsys.readouterr().out
    manifest.write_text(out.replace("rayVersion:", "rayVerison:"))
    assert main(["k8s", "--check", str(manifest)]) == 2
    captured = capsys.readouterr()
    assert "rayClusterConfig.rayVerison: unknown field" in captured.out
    assert "authOptions.mode token needs rayVersion 2.52.0 or later, got None" in captured.out
    assert "2 problems in the manifests above" in captured.err
    assert main(["k8s", DEMO, "--kind", "rayjb"]) == 2
    assert "--kind got 'rayjb' (did you mean 'rayjob'?)" in capsys.readouterr().err
    assert main(["k8s", DEMO, "--name", "Tiny_SFT"]) == 2
    assert "not a DNS-1035 label" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: builtin:tiny-llama\nlearning_rat: 1\n")
    assert main(["k8s", str(bad)]) == 2
    assert "did you mean 'learning_rate'" in capsys.readouterr().err
    assert main(["k8s"]) == 2


def test_jobs_tune_dispatches_to_the_tune_command():
    script = ROOT / "jobs" / "tune.py"
    assert script.read_text().startswith("# ray job submit ")
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "usage: raytune-llm tune" in result.stdout
