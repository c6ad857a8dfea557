"""Keys for generating text (chat, serve, predict) and for benchmark evaluation."""

from __future__ import annotations

from typing import Literal

from .base import CommaList, Section, doc


class GenerationArgs(Section):
    """Sampling settings shared by chat, serve and predict."""

    do_sample: bool = doc(True, "Sample tokens; false decodes greedily.")
    temperature: float = doc(0.95, "Sampling temperature.", gt=0)
    top_p: float = doc(
        0.7, "Nucleus sampling: keep the smallest token set with this mass.", gt=0, le=1
    )
    top_k: int = doc(50, "Sample from the k most likely tokens.", ge=0)
    num_beams: int = doc(1, "Beam search width (1 is no beam search).", gt=0)
    max_length: int = doc(1024, "Longest prompt + answer, in tokens.", gt=0)
    max_new_tokens: int = doc(1024, "Most tokens generated per answer.", gt=0)
    repetition_penalty: float = doc(1.0, "Penalty on repeated tokens (1.0 is none).", gt=0)
    length_penalty: float = doc(1.0, "Beam search length penalty.")
    skip_special_tokens: bool = doc(True, "Drop special tokens from decoded answers.")


class EvalArgs(Section):
    """Multiple-choice benchmark evaluation (MMLU, C-Eval, CMMLU) of ``raytune-llm eval``."""

    task: str | None = doc(
        None, "Benchmark and split, e.g. mmlu_test, ceval_validation, cmmlu_test."
    )
    task_dir: str = doc(
        "evaluation",
        "Folder holding the task folders (<name>/mapping.json + data/{dev,val,test}/*.csv, or a "
        ".zip of it); nothing is downloaded.",
    )
    batch_size: int = doc(4, "Questions per evaluation batch on each worker.", gt=0)
    lang: Literal["en", "zh"] = doc("en", "Language of the prompt wording.")
    n_shot: int = doc(
        5, "Solved examples from the dev split shown before each question (seeded by seed).", ge=0
    )
    eval_style: Literal["llamafactory", "harness"] = doc(
        "llamafactory",
        "Prompt and score as LLaMA-Factory did (chat template, shots as earlier turns, letter "
        "logit after 'Answer:') or as lm-evaluation-harness does (plain text, first n_shot dev "
        "rows, ' A' continuation).",
    )
    eval_checkpoints: CommaList | None = doc(
        None,
        "Several models scored side by side in one table: adapter or model folders (a sweep's "
        "best/), a run's output_dir (its checkpoint-N folders in step order, then its final "
        "model), or base (model_name_or_path alone). Each replaces adapter_name_or_path.",
    )
    save_dir: str | None = doc(None, "Folder the results are written to (must not exist yet).")
    download_mode: str = doc(
        "reuse_dataset_if_exists",
        "LLaMA-Factory's datasets download mode; benchmarks are read from task_dir only, so any "
        "other value only warns.",
    )
