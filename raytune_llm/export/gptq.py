"""GPTQ export (``export_quantization_bit``): transformers' GPTQ path (gptqmodel + optimum),
calibrated on windows of export_quantization_dataset.

Calibration windows: every record's text (its string fields, nested ones too, joined by new
lines) is tokenised and the token stream, with eos between records, is cut into windows of
export_quantization_maxlen tokens; export_quantization_nsamples of them are taken, spread evenly
over the data (LLaMA-Factory picks random records longer than the window, and fails when the
records are short; windows of the whole stream work for short records too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import Config
from ..utils.errors import UserError

INSTALL = 'pip install "raytune-llm[gptq]" (gptqmodel and optimum)'


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def calibration_texts(cfg: Config) -> Iterator[str]:
    """The texts of export_quantization_dataset: a data file, or a dataset_info.json name."""
    from ..data.readers import iter_dataset, iter_records
    from ..data.registry import resolve_datasets

    name = cfg.export.export_quantization_dataset or ""
    path = Path(name).expanduser()
    if path.is_file():
        records = iter_records(path)
    else:
        (spec,) = resolve_datasets([name], cfg.data.dataset_dir)
        records = iter_dataset(spec, cfg.data.dataset_dir)
    for record, _ in records:
        text = "\n".join(_strings(record))
        if text:
            yield text


def calibration_windows(
    texts: Iterator[str], tokenizer: Any, nsamples: int, maxlen: int
) -> list[dict[str, list[list[int]]]]:
    """``nsamples`` windows of ``maxlen`` tokens (fewer when the data is short), in GPTQ's
    format: ``{"input_ids": [[...]], "attention_mask": [[...]]}``.

    Raises:
        UserError: when the data holds no text at all.
    """
    stream: list[int] = []
    eos = tokenizer.eos_token_id
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
        if len(stream) >= nsamples * maxlen * 4:  # enough to spread the windows over
            break
    if not stream:
        raise UserError("export_quantization_dataset holds no text to calibrate on")
    count = max(1, len(stream) // maxlen)
    size = min(maxlen, len(stream))
    picks = (
        sorted({i * count // nsamples for i in range(nsamples)})
        if count > nsamples
        else range(count)
    )
    windows = [stream[i * size : (i + 1) * size] for i in picks]
    return [{"input_ids": [w], "attention_mask": [[1] * len(w)]} for w in windows if w]


def quantized_model(cfg: Config, path: str, tokenizer: Any) -> Any:
    """Load ``path`` quantized with GPTQ to export_quantization_bit bits.

    Raises:
        UserError: when gptqmodel / optimum are not installed.
    """
    try:
        import gptqmodel  # noqa: F401
        import optimum  # noqa: F401
    except ImportError:
        raise UserError(f"export_quantization_bit needs GPTQ support: {INSTALL}") from None
    import torch
    from transformers import AutoModelForCausalLM, GPTQConfig

    ex = cfg.export
    n, maxlen = ex.export_quantization_nsamples, ex.export_quantization_maxlen
    windows = calibration_windows(calibration_texts(cfg), tokenizer, n, maxlen)
    device = "cuda" if ex.export_device == "auto" and torch.cuda.is_available() else "cpu"
    config = GPTQConfig(bits=ex.export_quantization_bit, dataset=windows, tokenizer=tokenizer)
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=config, device_map=device, dtype="auto"
    )
    qc = model.config.quantization_config
    if isinstance(qc, dict):
        qc["dataset"] = None
    else:
        qc.dataset = None  # the calibration data is not part of the model
    return model
