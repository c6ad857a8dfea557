"""Keys that choose the data and turn it into training examples."""

from __future__ import annotations

from typing import Literal

from .base import CommaList, FloatCommaList, Section, doc


class DataArgs(Section):
    """Datasets, chat template, tokenisation and packing."""

    template: str | None = doc(
        None,
        "Chat template that renders conversations (llama3, qwen, chatml, alpaca, ...); unset "
        "uses the tokenizer's own chat template.",
    )
    dataset: CommaList | None = doc(
        None, "Training dataset name(s) from dataset_info.json, separated by commas."
    )
    eval_dataset: CommaList | None = doc(
        None, "Evaluation dataset name(s) from dataset_info.json, separated by commas."
    )
    dataset_dir: str = doc("data", "Folder holding dataset_info.json and the dataset files.")
    media_dir: str | None = doc(None, "Folder of images, videos and audio (default: dataset_dir).")
    cutoff_len: int = doc(2048, "Longest tokenised example; longer ones are truncated.", gt=0)
    train_on_prompt: bool = doc(False, "Also compute the loss on prompt tokens.")
    mask_history: bool = doc(False, "Train on the last turn only, not on earlier answers.")
    streaming: bool = doc(
        False,
        "Run the data pipeline again for every epoch instead of keeping the tokenised blocks "
        "for the run (in Ray's object store, spilling to disk).",
    )
    buffer_size: int = doc(16384, "Rows in the local shuffle buffer of each training worker.", gt=0)
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = doc(
        "concat",
        "How several datasets are mixed: concatenated, or interleaved (under/over sampled).",
    )
    interleave_probs: FloatCommaList | None = doc(
        None, "Sampling probability of each dataset when interleaving, separated by commas."
    )
    overwrite_cache: bool = doc(False, "Tokenise again even when a tokenised copy exists.")
    preprocessing_batch_size: int = doc(1000, "Examples per preprocessing batch.", gt=0)
    preprocessing_num_workers: int | None = doc(
        None, "Parallel preprocessing tasks (Ray Data sizes them itself when unset).", gt=0
    )
    max_samples: int | None = doc(None, "Use at most this many examples of each dataset.", gt=0)
    eval_num_beams: int | None = doc(None, "Beams used when generating for evaluation.", gt=0)
    ignore_pad_token_for_loss: bool = doc(True, "Leave padding tokens out of the loss.")
    val_size: float = doc(
        0.0,
        "Held-out share of the training data for evaluation: a fraction in [0, 1) or a count of "
        "examples (an integer >= 1).",
        ge=0,
    )
    eval_on_each_dataset: bool = doc(False, "Report eval metrics for each eval dataset apart.")
    packing: bool | None = doc(
        None, "Pack several examples into each cutoff_len-long row (default: on for stage pt)."
    )
    neat_packing: bool = doc(
        False, "Pack without letting attention cross example boundaries (implies packing)."
    )
    tool_format: str | None = doc(
        None, "How tool calls are written in prompts (default: template's)."
    )
    default_system: str | None = doc(None, "System prompt used when an example has none.")
    enable_thinking: bool | None = doc(
        True, "For reasoning templates (qwen3): keep the thinking part in prompts and answers."
    )
    preserve_thinking: bool = doc(
        False, "For reasoning templates: keep the thinking part of earlier turns too."
    )
    data_shared_file_system: bool = doc(
        False,
        "Datasets sit on a file system all nodes share.",
        ignored="Ray Data reads the data once and streams it to every worker",
    )
    tokenized_path: str | None = doc(
        None,
        "Save the tokenised dataset here (Parquet) on the first run, and read it back on later "
        "runs instead of tokenising again.",
    )
    skip_bad_records: bool = doc(
        False, "Skip malformed records (counted and reported) instead of stopping at the first."
    )
