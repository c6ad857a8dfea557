"""How a run is sized and scheduled: workers against the cluster, steps, warm-up, optimiser."""

from __future__ import annotations

import pytest
import torch

from raytune_llm.config import ConfigError, load_config
from raytune_llm.train.launch import _plan, grow, plan_workers
from raytune_llm.train.optim import build_optimizer, build_scheduler, warmup_steps
from raytune_llm.utils.errors import UserError

TWO_CPUS = {"CPU": 2.0, "memory": 1e10}


def cfg(*overrides):
    return load_config(None, ["model_name_or_path=builtin:tiny-llama", *overrides])


def test_cpu_workers_leave_room_for_data_and_use_every_core():
    one = plan_workers(cfg(), TWO_CPUS, [TWO_CPUS])
    assert one.resources == {"CPU": 1.5} and one.threads == 2 and not one.use_gpu
    two = plan_workers(cfg("ray_num_workers=2"), TWO_CPUS, [TWO_CPUS])
    assert two.resources == {"CPU": 0.75} and two.threads == 1
    assert two.data_cpus <= 2.0 - 2 * 0.75


def test_gpus_and_explicit_resources():
    node = {"CPU": 16.0, "GPU": 2.0}
    gpu = plan_workers(cfg("ray_num_workers=2"), node, [node])
    assert gpu.use_gpu and gpu.resources["GPU"] == 1.0
    mine = plan_workers(cfg("resources_per_worker={CPU: 4, GPU: 2}"), node, [node])
    assert mine.resources == {"CPU": 4.0, "GPU": 2.0}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["ray_num_workers=3", "resources_per_worker={GPU: 1}"], "needs 3 GPU but the cluster"),
        (["ray_num_workers=16"], "too few to give each worker a share"),
        (["ray_num_workers=2", "placement_strategy=STRICT_SPREAD",
          "resources_per_worker={CPU: 1}"], "only 1 node(s) can hold one"),
    ],
)  # fmt: skip
def test_what_the_cluster_cannot_hold_is_refused(overrides, fragment):
    with pytest.raises(UserError) as err:
        plan_workers(cfg(*overrides), TWO_CPUS, [TWO_CPUS])
    assert fragment in str(err.value)


def test_strict_spread_over_two_nodes():
    nodes = [{"CPU": 2.0}, {"CPU": 2.0}]
    spread = plan_workers(
        cfg(
            "ray_num_workers=2", "placement_strategy=STRICT_SPREAD", "resources_per_worker={CPU: 1}"
        ),
        {"CPU": 4.0},
        nodes,
    )
    assert spread.threads == 2 and spread.strategy == "STRICT_SPREAD"


def test_an_autoscaling_cluster_is_planned_on_the_nodes_it_can_add():
    head = {"CPU": 2.0, "memory": 1e10}
    gpu_node = {"CPU": 8.0, "GPU": 1.0}
    view = grow(head, [head], [(gpu_node, 4)], largest=2)  # GPU workers scaled to zero now
    assert len(view.nodes) == 3 and view.resources["GPU"] == 2.0
    workers = plan_workers(cfg("ray_num_workers=2"), view.resources, view.nodes)
    assert workers.use_gpu and workers.resources == {"GPU": 1.0, "CPU": 1.0}
    assert view.waits_for(workers) == "the workers need 2 GPU; the nodes up now have 2 CPU"
    up = grow({"CPU": 10.0, "GPU": 2.0}, [head, gpu_node, gpu_node], [(gpu_node, 4)], largest=2)
    assert up.waits_for(plan_workers(cfg("ray_num_workers=2"), up.resources, up.nodes)) == ""


def test_strict_spread_waits_for_nodes_but_not_for_what_no_node_group_offers():
    keys = ["ray_num_workers=2", "placement_strategy=STRICT_SPREAD",
            "resources_per_worker={CPU: 1}"]  # fmt: skip
    view = grow(TWO_CPUS, [TWO_CPUS], [({"CPU": 2.0}, -1)], largest=2)  # no upper limit
    workers = plan_workers(cfg(*keys), view.resources, view.nodes)
    assert "1 node(s) up now can hold one" in view.waits_for(workers)
    small = grow(TWO_CPUS, [TWO_CPUS], [({"CPU": 2.0, "GPU": 1.0}, 1)], largest=4)
    with pytest.raises(UserError, match="needs 3 GPU but the cluster has 1"):
        plan_workers(cfg("ray_num_workers=3", "resources_per_worker={GPU: 1}"), small.resources,
                     small.nodes)  # fmt: skip


def test_steps_follow_batch_workers_accumulation_and_epochs():
    workers = plan_workers(cfg("ray_num_workers=2"), TWO_CPUS, [TWO_CPUS])
    c = cfg("per_device_train_batch_size=4", "gradient_accumulation_steps=3", "num_train_epochs=2")
    plan = _plan(c, 1000, workers, has_eval=False, packed=False, engine={"engine": "ddp"})
    # 500 rows per worker -> 125 micro-batches -> 42 steps an epoch -> 84 steps.
    assert plan.micro_per_epoch == 125 and plan.total_steps == 84
    assert _plan(cfg("max_steps=7"), 1000, workers, False, False, {}).total_steps == 7
    with pytest.raises(UserError, match="fewer than per_device_train_batch_size"):
        _plan(cfg("per_device_train_batch_size=64"), 100, workers, False, False, {})


def test_warmup_and_schedule():
    assert warmup_steps(cfg("warmup_ratio=0.1"), 200) == 20
    assert warmup_steps(cfg("warmup_steps=5", "warmup_ratio=0.1"), 200) == 5
    assert warmup_steps(cfg("warmup_steps=0.25"), 200) == 50
    model = torch.nn.Linear(4, 4)
    c = cfg("learning_rate=0.1", "warmup_steps=2", "lr_scheduler_type=linear")
    opt = build_optimizer(model, c)
    sched = build_scheduler(opt, c, 10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.0125)


def test_optimizer_groups_weight_decay_and_loraplus():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, cfg("weight_decay=0.1", "adam_beta2=0.95"))
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 0.1] and opt.defaults["betas"] == (0.9, 0.95)
    with pytest.raises(ConfigError, match=r"optim \(command line\): got 'lion'; unknown optimizer"):
        cfg("optim=lion")  # refused with the config, before a worker builds the optimiser
    with pytest.raises(ConfigError, match="did you mean 'adamw_torch'"):
        cfg("optim=adamw_torh")


def test_what_this_version_cannot_train_is_named():
    from raytune_llm.config.available import unavailable

    assert unavailable(cfg("do_train=true", "dataset=d", "output_dir=o")) == []
    missing = " | ".join(
        message
        for _, message in unavailable(
            cfg(
                "stage=ppo",
                "deepspeed={zero_optimization: {stage: 3}}",
                "quantization_bit=4",
                "torch_compile=true",
            )
        )
    )
    for fragment in ("stage ppo", "do_train is false", "quantization_bit with FSDP or ZeRO-3",
                     "torch_compile with DeepSpeed (compile with DDP or FSDP)"):  # fmt: skip
        assert fragment in missing


def test_a_workers_user_error_reaches_the_cli_as_itself():
    """A mistake only a worker sees (a layer class, a missing compiler) fails the run with its
    own message, not Ray Train's report of worker failures."""
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    from raytune_llm.utils.errors import find_error, surfaced

    mistake = UserError("fsdp: found no layer to shard")
    wrapped = RayTaskError("train_fn", "traceback text", mistake)
    failure = WorkerGroupError("rank 0 failed", {0: RuntimeError("lost"), 1: wrapped})
    assert find_error(failure, UserError) is mistake
    assert find_error(WorkerGroupError("x", {0: RuntimeError("lost")}), UserError) is None
    with (
        pytest.raises(UserError, match="found no layer to shard") as caught,
        surfaced(UserError),
    ):
        raise failure
    assert caught.value is mistake and caught.value.__suppress_context__
    with pytest.raises(WorkerGroupError), surfaced(UserError):  # no UserError: as it was
        raise WorkerGroupError("x", {0: RuntimeError("lost")})
