"""Two Ray nodes on this machine (ray.cluster_utils.Cluster), one training worker on each.

The cluster starts with its head alone and publishes, as an autoscaler (KubeRay's, the cluster
launcher's) does, that it can add one 2-CPU node. The run must plan on that node, say it waits for
it, and start once the test, in the autoscaler's place, adds the node while the run's placement
group is pending. Without the autoscaler's report the same run is refused up front.

The cluster runs in a child process of its own: it must not meet the session's local Ray
instance (tests/conftest.py's ray_local), and a process can hold only one Ray connection.
RAY_TMPDIR gives the child its own session folders and its own "current cluster" address file,
so nothing it leaves behind points another Ray user on this machine at it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "tiny_lora_sft.yaml"

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    import ray
    import ray._raylet
    from ray.core.generated import autoscaler_pb2
    from ray.cluster_utils import Cluster
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put
    from ray.util.state import list_actors

    from raytune_llm.config import load_config
    from raytune_llm.train.launch import run_training
    from raytune_llm.utils.errors import UserError

    demo, model, data, out, ports = sys.argv[1:6]
    # The State API needs the dashboard. Every port is the test's pick: the tests' shared Ray
    # instance holds the default ones.
    head = {"num_cpus": 2, "include_dashboard": True, **json.loads(ports)}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    ray.init(address=cluster.address)
    KEY = (ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY,
           ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE)

    def autoscaler_report(can_add: bool) -> None:
        if not can_add:
            _internal_kv_del(KEY[0], namespace=KEY[1])
            return
        group = autoscaler_pb2.NodeGroupConfig(name="cpu-workers", resources={"CPU": 2},
                                               min_count=0, max_count=1)
        config = autoscaler_pb2.ClusterConfig(node_group_configs=[group])
        _internal_kv_put(KEY[0], config.SerializeToString(), namespace=KEY[1])

    def add_node_once_the_run_waits(run: threading.Thread) -> bool:
        # Add the node (Ray adds nodes from the main thread only) once the run's placement
        # group waits for it.
        deadline = time.time() + 300
        while time.time() < deadline and run.is_alive():
            table = ray.util.placement_group_table().values()
            if any(pg["state"] == "PENDING" for pg in table):
                cluster.add_node(num_cpus=2)
                return True
            time.sleep(0.5)
        return False

    try:
        keys = [
            f"model_name_or_path={model}", f"dataset_dir={data}", f"output_dir={out}",
            "max_samples=64", "max_steps=4", "save_steps=4", "logging_steps=2",
            "eval_strategy=no", "plot_loss=false", "disable_tqdm=true",
            "ray_num_workers=2", "placement_strategy=STRICT_SPREAD",
            'resources_per_worker={"CPU": 1}',
        ]
        autoscaler_report(False)
        try:
            run_training(load_config(demo, keys), show_bar=False)
            refused = ""
        except UserError as err:
            refused = str(err)
        autoscaler_report(True)
        results = []
        run = threading.Thread(target=lambda: results.append(
            run_training(load_config(demo, keys), show_bar=False)))
        run.start()
        added = add_node_once_the_run_waits(run)
        run.join(timeout=400)
        result = results[0]
        workers = list_actors(address=cluster.address, detail=True,  # not the newest Ray here
                              filters=[("class_name", "=", "RayTrainWorker")])
        report = {
            "refused": refused,
            "node_added": added,
            "steps": result.steps,
            "nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
            "worker_nodes": [a.node_id for a in workers],
        }
        print("RESULT " + json.dumps(report), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def test_strict_spread_waits_for_the_node_the_autoscaler_adds(tiny_llama_dir, tmp_path):
    out = tmp_path / "spread"
    names = (
        "dashboard_port",
        "dashboard_agent_listen_port",
        "metrics_agent_port",
        "runtime_env_agent_port",
        "metrics_export_port",
        "ray_client_server_port",
    )
    ports = json.dumps({name: free_port() for name in names})
    with tempfile.TemporaryDirectory(prefix="rtm", dir="/tmp") as ray_tmp:  # short socket paths
        env = {**os.environ, "RAY_TMPDIR": ray_tmp}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(DEMO), str(tiny_llama_dir), str(ROOT / "data"),
             str(out), ports],
            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    report = json.loads(line.removeprefix("RESULT "))
    assert "only 1 node(s) can hold one" in report["refused"]  # no autoscaler: refused
    assert report["node_added"]
    assert "waiting for the autoscaler to add nodes" in proc.stdout
    assert len(report["nodes"]) == 2
    assert report["steps"] == 4
    # Both workers ran, and on different nodes: the two nodes of the cluster.
    assert len(report["worker_nodes"]) == 2
    assert sorted(report["worker_nodes"]) == report["nodes"]
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "checkpoint-4" / "trainer_state.json").is_file()
    lines = (out / "trainer_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["current_steps"] for x in lines] == [2, 4]
