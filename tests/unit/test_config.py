"""The config: YAML + overrides → one validated object, every problem reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from raytune_llm.config import KEY_OWNER, SECTIONS, ConfigError, field_info, load_config
from raytune_llm.config.render import to_yaml

# The keys the project promises (LLaMA-Factory's names), and the Ray keys it adds.
PROMISED_KEYS = """
model_name_or_path adapter_name_or_path template trust_remote_code stage do_train do_eval
do_predict finetuning_type lora_target lora_rank lora_alpha lora_dropout quantization_bit dataset
eval_dataset dataset_dir cutoff_len max_samples val_size packing output_dir overwrite_output_dir
logging_steps save_steps eval_steps per_device_train_batch_size gradient_accumulation_steps
max_grad_norm learning_rate lr_scheduler_type num_train_epochs max_steps bf16 fp16 warmup_ratio
warmup_steps seed push_to_hub deepspeed resume_from_checkpoint plot_loss report_to infer_backend
max_new_tokens temperature top_p top_k do_sample repetition_penalty export_dir export_size
export_device export_quantization_bit export_quantization_dataset task task_dir batch_size lang
n_shot save_dir ray_num_workers resources_per_worker placement_strategy ray_storage_path
ray_address max_failures save_strategy eval_strategy per_device_eval_batch_size ddp_timeout
preprocessing_num_workers overwrite_cache dataloader_num_workers run_name data_seed disable_tqdm
include_num_input_tokens_seen
""".split()


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(err: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.key: p.message for p in err.value.problems}


BASE = "model_name_or_path: builtin:tiny-llama\n"


def test_promised_keys_exist_once_with_descriptions():
    missing = [k for k in PROMISED_KEYS if k not in KEY_OWNER]
    assert not missing
    declared = [k for cls in SECTIONS.values() for k in cls.model_fields]
    assert len(declared) == len(set(declared)), "a key is declared in two sections"
    undocumented = [k for k in declared if len(field_info(k).description or "") < 10]
    assert not undocumented


def test_three_mistakes_reported_together_with_lines(tmp_path):
    path = write(
        tmp_path,
        BASE + "stage: sftt\nfinetuning_type: lora\nlora_rank: -1\nlearning_rat: 1.0e-4\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    found = {p.key: p for p in err.value.problems}
    assert set(found) == {"stage", "lora_rank", "learning_rat"}
    assert "did you mean 'sft'" in found["stage"].message
    assert "pt, sft, rm, ppo, dpo, kto, orpo" in found["stage"].message
    assert "-1" in found["lora_rank"].message and "> 0" in found["lora_rank"].message
    assert "did you mean 'learning_rate'" in found["learning_rat"].message
    assert (found["stage"].line, found["lora_rank"].line, found["learning_rat"].line) == (2, 4, 5)
    text = str(err.value)
    assert "3 problems" in text and f"{path}:5" in text


def test_wrong_types_and_ranges(tmp_path):
    path = write(
        tmp_path,
        BASE + "lora_rank: eight\nbf16: maybe\nlora_dropout: 1.5\nquantization_bit: 3\n"
        "placement_strategy: pack\nresources_per_worker: {CPU: -1}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    found = problems(err)
    assert "'eight'" in found["lora_rank"] and "integer" in found["lora_rank"]
    assert "'maybe'" in found["bf16"]
    assert "< 1" in found["lora_dropout"]
    assert "valid: 4, 8" in found["quantization_bit"]
    assert (
        "PACK" in found["placement_strategy"]
        and "did you mean 'PACK'" in found["placement_strategy"]
    )
    assert ">= 0" in found["resources_per_worker"]


def test_values_are_coerced_as_llama_factory_does(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string; HF's argument parser accepts it, so do we.
    path = write(
        tmp_path, BASE + "learning_rate: 1e-4\ndataset: a, b\nlora_target: q_proj,v_proj\n"
    )
    cfg = load_config(path)
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.data.dataset == ["a", "b"]
    assert cfg.finetuning.lora_target == ["q_proj", "v_proj"]


def test_yaml_no_is_the_word_for_strategies(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE + "eval_strategy: no\nsave_strategy: no\n"), ["logging_strategy=no"]
    )
    assert (cfg.train.eval_strategy, cfg.train.save_strategy) == ("no", "no")
    assert cfg.train.logging_strategy == "no"


def test_overrides(tmp_path):
    path = write(tmp_path, BASE + "lora_rank: 8\nresources_per_worker: {CPU: 1}\n")
    cfg = load_config(
        path,
        [
            "lora_rank=16",
            "learning_rate=1e-4",
            "dataset=a,b",
            "resources_per_worker.GPU=1",
            "tune.num_samples=8",
            "tune.param_space.lora_rank=[4, 8]",
            "tune.metric=loss",
            "--bf16=true",
            "template=",
        ],
    )
    assert cfg.finetuning.lora_rank == 16
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.data.dataset == ["a", "b"]
    assert cfg.ray.resources_per_worker == {"CPU": 1.0, "GPU": 1.0}
    assert cfg.tune.num_samples == 8 and cfg.tune.param_space == {"lora_rank": [4, 8]}
    assert cfg.train.bf16 is True
    assert cfg.data.template is None


def test_bad_overrides_name_the_command_line(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError) as err:
        load_config(path, ["lora_rank", "lora_rnak=4", "lora_alpha=many"])
    found = {p.key: p for p in err.value.problems}
    assert "key=value" in found["lora_rank"].message
    assert "did you mean 'lora_rank'" in found["lora_rnak"].message
    assert found["lora_rnak"].source == "command line" and found["lora_rnak"].line is None
    assert "'many'" in found["lora_alpha"].message


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ("bf16: true\nfp16: true\n", "fp16", "both true"),
        (
            "do_train: true\nfinetuning_type: full\nquantization_bit: 4\ndataset: d\n"
            "output_dir: o\n",
            "quantization_bit",
            "finetuning_type: lora",
        ),
        ("finetuning_type: freeze\nadapter_name_or_path: a\n", "adapter_name_or_path", "lora"),
        ("do_train: true\noutput_dir: o\n", "dataset", "no dataset"),
        ("do_train: true\ndataset: d\n", "output_dir", "required"),
        ("eval_strategy: steps\n", "eval_strategy", "no eval data"),
        ("do_eval: true\n", "eval_dataset", "no eval data"),
        ("val_size: 2.5\n", "val_size", "whole count"),
        (
            "dataset: a,b\nmix_strategy: interleave_under\ninterleave_probs: 0.5,0.3,0.2\n",
            "interleave_probs",
            "3 values for 2 datasets",
        ),
        ("interleave_probs: 0.5,0.5\ndataset: a,b\n", "interleave_probs", "interleave_under"),
        ("neat_packing: true\npacking: false\n", "neat_packing", "packing"),
        ("stage: ppo\ndo_train: true\ndataset: d\noutput_dir: o\n", "reward_model", "ppo"),
        ("stage: dpo\npredict_with_generate: true\n", "predict_with_generate", "sft"),
        ("deepspeed: missing/ds.json\n", "deepspeed", "file not found"),
        ("deepspeed: {zero_optimization: {stage: 2}}\nfsdp: full_shard\n", "fsdp", "together"),
        ("export_quantization_bit: 4\n", "export_quantization_dataset", "calibration"),
        ("report_to: none,wandb\n", "report_to", "none"),
        ("report_to: neptune\n", "report_to", "valid: none"),
        ("lr_scheduler_type: cosin\n", "lr_scheduler_type", "did you mean 'cosine'"),
        ("freeze_trainable_layers: 0\n", "freeze_trainable_layers", "not be 0"),
        ("stage: dpo\ntrain_on_prompt: true\n", "train_on_prompt", "stage sft"),
        ("mask_history: true\ntrain_on_prompt: true\n", "mask_history", "train_on_prompt"),
        ("do_predict: true\ndataset: d\noutput_dir: o\n", "predict_with_generate", "needs"),
        ("pref_loss: ipo\ndpo_label_smoothing: 0.1\n", "dpo_label_smoothing", "sigmoid"),
        ("finetuning_type: full\nuse_dora: true\n", "use_dora", "lora"),
        ("quantization_bit: 4\npissa_init: true\n", "pissa_init", "quantized"),
        ("val_size: 0.1\neval_dataset: e\n", "val_size", "eval_dataset"),
        ("resources_per_worker: {GPU: yes}\n", "resources_per_worker", "numbers"),
        ("resources_per_worker: '{GPU: 1'\n", "resources_per_worker", "JSON"),
        ("model_name_or_path: builtin:tiny-gpt\n", "model_name_or_path", "builtin:tiny-llama"),
        (
            "load_best_model_at_end: true\neval_strategy: steps\nsave_strategy: epoch\n"
            "val_size: 0.1\n",
            "load_best_model_at_end",
            "save_strategy",
        ),
    ],
)
def test_contradictions(tmp_path, extra, key, fragment):
    text = extra if extra.startswith("model_name_or_path") else BASE + extra
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    found = problems(err)
    assert key in found, found
    assert fragment in found[key]


def test_cross_rules_run_alongside_field_errors(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, BASE + "lora_rank: 0\nbf16: true\nfp16: true\n"))
    assert set(problems(err)) == {"lora_rank", "fp16"}


def test_deepspeed_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    (tmp_path / "bad.json").write_text("{not json")
    assert load_config(write(tmp_path, BASE + "deepspeed: ds.json\n")).train.deepspeed == "ds.json"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, BASE + "deepspeed: bad.json\n"))
    assert "not valid JSON" in problems(err)["deepspeed"]


def test_file_level_problems(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"YAML syntax error") as err:
        load_config(write(tmp_path, BASE + "lora_rank: [8\nstage: sft\n"))
    assert err.value.problems[0].line is not None
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="given twice") as err:
        load_config(write(tmp_path, BASE + "lora_rank: 8\nlora_rank: 16\n"))
    assert err.value.problems[0].line == 3
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""))
    assert "required" in problems(err)["model_name_or_path"]
    with pytest.raises(ConfigError, match="expected a mapping of settings"):
        load_config(write(tmp_path, BASE + "tune: 3\n"))


def test_renamed_unsupported_and_ignored_keys(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            BASE + "evaluation_strategy: steps\nval_size: 0.1\nuse_unsloth: false\n"
            "dataloader_num_workers: 4\n",
        )
    )
    assert cfg.train.eval_strategy == "steps"
    text = "\n".join(cfg.warnings)
    assert "evaluation_strategy is an old name of eval_strategy" in text
    assert "use_unsloth" in text
    assert "dataloader_num_workers has no effect on Ray" in text
    with pytest.raises(ConfigError) as err:
        load_config(
            write(
                tmp_path, BASE + "use_unsloth: true\nevaluation_strategy: no\neval_strategy: no\n"
            )
        )
    found = problems(err)
    assert "not supported" in found["use_unsloth"]
    assert "new name eval_strategy" in found["evaluation_strategy"]


def test_json_string_mappings_and_feature_settings(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            BASE + 'resources_per_worker: \'{"GPU": 1, "CPU": 4}\'\ngalore_rank: 16\n'
            "use_galore: false\nfreeze_vision_tower: true\ndpo_beta: 0.2\n",
        )
    )
    assert cfg.ray.resources_per_worker == {"GPU": 1, "CPU": 4}
    assert cfg.finetuning.pref_beta == 0.2
    text = "\n".join(cfg.warnings)
    assert "galore_rank has no effect: raytune-llm does not implement GaLore" in text
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, BASE + "use_galore: true\nfreeze_vision_tower: false\n"))
    assert set(problems(err)) == {"use_galore", "freeze_vision_tower"}


def test_resolved_yaml_round_trips(tmp_path):
    path = write(
        tmp_path,
        BASE + "stage: dpo\ndataset: a,b\nlearning_rate: 1e-4\nresources_per_worker: {CPU: 2}\n"
        "tune: {metric: loss, param_space: {lora_rank: {choice: [4, 8]}}}\n",
    )
    cfg = load_config(path)
    again = load_config(write(tmp_path, to_yaml(cfg), "resolved.yaml"))
    assert again.to_flat() == cfg.to_flat()
    only_set = yaml.safe_load(to_yaml(cfg, only_set=True))
    assert set(only_set) == {
        "model_name_or_path",
        "stage",
        "dataset",
        "learning_rate",
        "resources_per_worker",
        "tune",
    }


LLAMA_FACTORY_YAML = """\
### model
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null

### eval
# eval_dataset: alpaca_en_demo
# val_size: 0.1
# per_device_eval_batch_size: 1
# eval_strategy: steps
# eval_steps: 500
"""


def test_llama_factory_yaml_validates_unchanged(tmp_path):
    cfg = load_config(write(tmp_path, LLAMA_FACTORY_YAML))
    assert cfg.finetuning.stage == "sft" and cfg.data.dataset == ["identity", "alpaca_en_demo"]
    assert cfg.train.gradient_accumulation_steps == 8 and cfg.train.bf16
    assert cfg.train.ddp_timeout == 180000000
    assert [w for w in cfg.warnings if "dataloader_num_workers" in w]
