"""The data pipeline as one lazy Ray Data graph: read → convert → mix → split → tokenise → pack.

    prepared = prepare_data(cfg, tokenizer_factory)
    for batch in prepared.train.iter_batches(): ...

Nothing here holds the dataset: every step is a Ray Data operator, so records stream from the
files through the preprocessing tasks into whoever consumes them (the training workers), and
the driver only plans. Each dataset is read and converted with its own dataset_info.json entry;
the canonical examples (pickled, with their file and line) are then mixed, split for
validation by a hash of their content (deterministic, no shuffle of the whole data), tokenised
with the chat template and, with ``packing``, packed into ``cutoff_len``-long rows.

With ``tokenized_path`` the result is written once as Parquet (plus the settings it was made
with) and read back by later runs instead of tokenising again.
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..config.errors import did_you_mean
from ..utils.errors import UserError
from .converters import check_stage, convert
from .errors import DataError, skip_or_raise
from .readers import new_bad_record_counter, read_dataset, unpack_row
from .registry import DatasetSpec, resolve_datasets
from .stages import STAGE_DATA

if TYPE_CHECKING:
    import ray.data

TokenizerFactory = Callable[[], Any]
"""A picklable function that loads the model's tokenizer (e.g. a functools.partial)."""

EXAMPLE_COLUMNS = ("_example", "_where")
HASH_SPACE = 1_000_000


@dataclass(frozen=True)
class TextSettings:
    """What a preprocessing task needs to tokenise: picklable, and the key of the task's cache."""

    stage: str
    cutoff_len: int
    template: str | None
    default_system: str | None
    tool_format: str | None
    enable_thinking: bool | None
    preserve_thinking: bool
    train_on_prompt: bool
    mask_history: bool
    model: str

    @classmethod
    def of(cls, cfg: Config) -> TextSettings:
        d, f = cfg.data, cfg.finetuning
        return cls(
            stage=f.stage,
            cutoff_len=d.cutoff_len,
            template=d.template,
            default_system=d.default_system,
            tool_format=d.tool_format,
            enable_thinking=d.enable_thinking,
            preserve_thinking=d.preserve_thinking,
            train_on_prompt=d.train_on_prompt,
            mask_history=d.mask_history,
            model=cfg.model.model_name_or_path,
        )


_TOOLS: dict[TextSettings, tuple[Any, Any]] = {}


def text_tools(settings: TextSettings, factory: TokenizerFactory) -> tuple[Any, Any]:
    """The (tokenizer, template) of a settings, loaded once per worker process."""
    if settings not in _TOOLS:
        from .templates import get_template

        tokenizer = factory()
        try:
            template = get_template(
                settings.template,
                tokenizer,
                default_system=settings.default_system,
                tool_format=settings.tool_format,
                enable_thinking=settings.enable_thinking,
                preserve_thinking=settings.preserve_thinking,
            )
        except UserError as err:  # travels through Ray as a DataError, shown without traceback
            raise DataError(str(err), where="template") from None
        template.fix_tokenizer(tokenizer)
        _TOOLS[settings] = (tokenizer, template)
    return _TOOLS[settings]


@dataclass
class PreparedData:
    """The datasets a run trains and evaluates on, and the tally of skipped records."""

    train: ray.data.Dataset | None
    eval: ray.data.Dataset | None
    stage: str
    packed: bool
    bad_records: Any = None
    notes: list[str] = field(default_factory=list)


# ---- map functions (instances of these run inside Ray Data tasks) ----------------------------


class Convert:
    """Raw rows of one dataset → canonical examples, pickled with their location."""

    def __init__(self, spec: DatasetSpec, stage: str, skip_bad: bool, counter: Any):
        self.spec, self.stage, self.skip_bad, self.counter = spec, stage, skip_bad, counter

    def __call__(self, batch: Any) -> dict[str, list]:
        examples, wheres = [], []
        for row in batch.to_pylist():
            record, where = unpack_row(row)
            try:
                example = convert(record, self.spec, self.stage, where=where)
            except DataError as error:
                skip_or_raise(error, self.skip_bad, self.counter)
                continue
            examples.append(pickle.dumps(example, protocol=5))
            wheres.append(str(where))
        return {"_example": examples, "_where": wheres}


def _windows(num_rows: int, size: int) -> range:
    """Starts of the consecutive windows of ``size`` rows that a block is worked in."""
    return range(0, num_rows, size)


class Tokenize:
    """Canonical examples → token ids and labels for the stage (see ``tokenize``).

    Takes whole blocks and tokenises them in windows of ``batch_size`` examples (KTO pairs
    completions inside a window), yielding one output per window.
    """

    def __init__(
        self,
        settings: TextSettings,
        factory: TokenizerFactory,
        skip_bad: bool,
        counter: Any,
        batch_size: int,
    ):
        self.settings, self.factory = settings, factory
        self.skip_bad, self.counter, self.batch_size = skip_bad, counter, batch_size

    def __call__(self, block: Any) -> Iterator[dict[str, list]]:
        for start in _windows(block.num_rows, self.batch_size):
            if out := self._window(block.slice(start, self.batch_size)):
                yield out

    def _window(self, batch: Any) -> dict[str, list]:
        tokenizer, template = text_tools(self.settings, self.factory)
        entry = STAGE_DATA[self.settings.stage]
        examples = [pickle.loads(b) for b in batch.column("_example").to_pylist()]
        if entry.encode_window is not None:
            return _columns(entry.encode_window(examples, template, tokenizer, self.settings))
        rows = []
        wheres = batch.column("_where").to_pylist()
        for example, where in zip(examples, wheres, strict=True):
            try:
                rows.append(entry.encode_one(example, template, tokenizer, self.settings))
            except DataError as error:
                located = DataError(error.reason, where=where)
                skip_or_raise(located, self.skip_bad, self.counter)
        return _columns(rows)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    if not rows:
        return {}
    return {key: [row[key] for row in rows] for key in rows[0]}


class Pack:
    """Tokenised examples → rows of at most cutoff_len tokens (``packing``).

    Takes whole blocks and packs each window of ``window`` consecutive examples on its own
    (LLaMA-Factory packs each ``datasets.map`` batch), yielding one output per window.
    """

    def __init__(self, stage: str, cutoff_len: int, neat: bool, window: int):
        self.stage, self.cutoff_len, self.neat, self.window = stage, cutoff_len, neat, window

    def __call__(self, block: dict[str, Any]) -> Iterator[dict[str, list]]:
        for start in _windows(len(block["input_ids"]), self.window):
            batch = {key: column[start : start + self.window] for key, column in block.items()}
            if out := self._window(batch):
                yield out

    def _window(self, batch: dict[str, Any]) -> dict[str, list]:
        from .packing import chunk_pretrain, pack_batch

        if STAGE_DATA[self.stage].record == "text":
            examples = [
                {"input_ids": list(i), "labels": list(label)}
                for i, label in zip(batch["input_ids"], batch["labels"], strict=True)
            ]
            return _columns(list(chunk_pretrain(examples, self.cutoff_len)))
        return pack_batch(batch, self.cutoff_len, self.neat)


class HashSplit:
    """Keep the examples whose content hash falls in (or out of) the validation share."""

    def __init__(self, threshold: int, keep_eval: bool):
        self.threshold, self.keep_eval = threshold, keep_eval

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        hashes = [zlib.crc32(b) % HASH_SPACE for b in batch.column("_example").to_pylist()]
        mask = [(h < self.threshold) == self.keep_eval for h in hashes]
        return batch.filter(pa.array(mask, type=pa.bool_()))


# ---- the graph ---------------------------------------------------------------------------------


def val_split(ds: Any, cfg: Config, keep_eval: bool, num_cpus: float | None) -> Any:
    """The ``val_size`` share of the examples (``keep_eval``) or the rest, by content hash.

    A share below 1 is a fraction; a whole number is a count, turned into the fraction of the
    examples it is.
    """
    val_size = cfg.data.val_size
    share = val_size if val_size < 1 else val_size / max(ds.count(), 1)
    split = HashSplit(round(min(share, 1.0) * HASH_SPACE), keep_eval)
    remote = {"num_cpus": num_cpus} if num_cpus is not None else {}
    return ds.map_batches(split, batch_format="pyarrow", **remote)


def _examples(spec: DatasetSpec, cfg: Config, counter: Any, num_cpus: float | None) -> Any:
    """One dataset's canonical examples, limited to num_samples / max_samples."""
    skip = cfg.data.skip_bad_records
    remote = {"num_cpus": num_cpus} if num_cpus is not None else {}
    raw = read_dataset(spec, cfg.data.dataset_dir, skip_bad=skip, bad_counter=counter, **remote)
    ds = raw.map_batches(
        Convert(spec, cfg.finetuning.stage, skip, counter), batch_format="pyarrow", **remote
    )
    if spec.num_samples:
        ds = _resample(ds, spec.num_samples, cfg.train.data_seed or cfg.train.seed)
    if cfg.data.max_samples:
        ds = ds.limit(cfg.data.max_samples)
    return ds


def _resample(ds: Any, num_samples: int, seed: int) -> Any:
    """LLaMA-Factory's num_samples: that many examples, repeating the dataset when it is short."""
    total = ds.count()
    if num_samples <= total:
        return ds.random_shuffle(seed=seed).limit(num_samples)
    whole, rest = divmod(num_samples, total)
    parts = [ds] * whole + ([ds.random_shuffle(seed=seed).limit(rest)] if rest else [])
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _mix(parts: list[Any], cfg: Config) -> Any:
    """Concatenate, or interleave with probabilities (under- or over-sampling), as LLaMA-Factory.

    Interleaving stops at the first exhausted dataset (``interleave_under``) or at the last
    (``interleave_over``, repeating the others); the composition is the one that sampling
    dataset i with probability p_i gives, and the order is shuffled.
    """
    if len(parts) == 1:
        return parts[0]
    strategy = cfg.data.mix_strategy
    if strategy == "concat":
        return parts[0].union(*parts[1:])
    probs = cfg.data.interleave_probs or [1 / len(parts)] * len(parts)
    counts = [p.count() for p in parts]
    ratios = [n / p for n, p in zip(counts, probs, strict=True) if p > 0]
    total = min(ratios) if strategy == "interleave_under" else max(ratios)
    seed = cfg.train.data_seed or cfg.train.seed
    taken = []
    for ds, n, p in zip(parts, counts, probs, strict=True):
        want = round(p * total)
        if want:
            taken.append(_resample(ds, want, seed) if want != n else ds)
    mixed = taken[0].union(*taken[1:]) if len(taken) > 1 else taken[0]
    return mixed.random_shuffle(seed=seed)


def _tokenized(ds: Any, cfg: Config, factory: TokenizerFactory, counter: Any, packed: bool,
               num_cpus: float | None) -> Any:  # fmt: skip
    # No batch_size on these maps: Ray Data would then bundle input blocks up to it and refuse
    # to fuse the maps with the read, so one task would take many read parts at once (or the
    # read would run ahead, filling the object store). Without it, read → convert → tokenise
    # → pack run as one task per read part, and the windows of preprocessing_batch_size
    # examples are cut inside the functions.
    remote = {"num_cpus": num_cpus} if num_cpus is not None else {}
    batch = cfg.data.preprocessing_batch_size
    tokenize = Tokenize(TextSettings.of(cfg), factory, cfg.data.skip_bad_records, counter, batch)
    out = ds.map_batches(tokenize, batch_format="pyarrow", **remote)
    if packed:
        pack = Pack(cfg.finetuning.stage, cfg.data.cutoff_len, cfg.data.neat_packing, batch)
        out = out.map_batches(pack, batch_format="numpy", **remote)
    return out


def check_data(cfg: Config) -> tuple[list[DatasetSpec], list[DatasetSpec]]:
    """Check what can be checked without reading a record or starting Ray: the registry, the
    dataset names, each dataset's fitness for the stage, and the template name.

    Returns:
        The train and eval datasets' specs.

    Raises:
        DataError: naming the dataset_info.json entry, the name or the key.
    """
    d = cfg.data
    _check_template(d.template)
    train = resolve_datasets(d.dataset, d.dataset_dir) if d.dataset else []
    evaluation = resolve_datasets(d.eval_dataset, d.dataset_dir) if d.eval_dataset else []
    for spec in train + evaluation:
        check_stage(spec, cfg.finetuning.stage)
    return train, evaluation


def _check_template(name: str | None) -> None:
    from .templates import TEMPLATE_NAMES

    if name is not None and name not in TEMPLATE_NAMES:
        hint = did_you_mean(name, TEMPLATE_NAMES)
        raise DataError(
            f"unknown template '{name}'{hint}; valid: {', '.join(TEMPLATE_NAMES)}, or leave "
            "template unset to use the tokenizer's own chat template",
            where="template",
        )


def packing_on(cfg: Config) -> bool:
    """Whether examples are packed: the config's packing (by default only for stage pt), for
    the stages whose examples may be packed (the preference stages' never are)."""
    d = cfg.data
    if not STAGE_DATA[cfg.finetuning.stage].packs:
        return False
    return bool(
        d.neat_packing or (d.packing if d.packing is not None else cfg.finetuning.stage == "pt")
    )


def prepare_data(
    cfg: Config,
    tokenizer_factory: TokenizerFactory,
    *,
    num_cpus: float | None = None,
) -> PreparedData:
    """Build the lazy train and eval datasets of a run.

    Checks the registry, the names and each dataset's fitness for the stage at once (a
    DataError before anything is read); records are read only when the datasets are consumed.

    Args:
        cfg: the run's config (``dataset``, ``eval_dataset``, ``val_size``, ``cutoff_len``, ...).
        tokenizer_factory: loads the tokenizer inside the preprocessing tasks.
        num_cpus: CPUs each preprocessing task reserves (Ray Data's default: 1). On a small node
            shared with training workers give a fraction, so data tasks can always be scheduled.
    """
    d, packed = cfg.data, packing_on(cfg)
    counter = new_bad_record_counter() if d.skip_bad_records else None
    prepared = PreparedData(None, None, cfg.finetuning.stage, packed, counter)
    cached = _read_cache(cfg, packed)
    if cached is not None:
        prepared.train, prepared.eval = cached
        prepared.notes.append(f"read tokenised data from {d.tokenized_path}")
        return prepared
    train_specs, eval_specs = check_data(cfg)
    examples = [_examples(s, cfg, counter, num_cpus) for s in train_specs]
    train = _mix(examples, cfg) if examples else None
    evaluation = None
    if eval_specs:
        evaluation = _mix([_examples(s, cfg, counter, num_cpus) for s in eval_specs], cfg)
    elif train is not None and d.val_size > 0:
        train, evaluation = (val_split(train, cfg, keep, num_cpus) for keep in (False, True))
    prepared.train, prepared.eval = (
        _tokenized(ds, cfg, tokenizer_factory, counter, packed, num_cpus)
        if ds is not None
        else None
        for ds in (train, evaluation)
    )
    if d.tokenized_path:
        _write_cache(cfg, packed, prepared)
        prepared.train, prepared.eval = _read_cache(cfg, packed) or (None, None)
        prepared.notes.append(f"wrote tokenised data to {d.tokenized_path}")
    return prepared


def prediction_examples(cfg: Config, *, num_cpus: float | None = None) -> tuple[Any, str, Any]:
    """The canonical examples that ``predict`` answers, as a lazy dataset in dataset order.

    As LLaMA-Factory's ``do_predict``: the ``eval_dataset``; without one, the ``val_size``
    share of ``dataset`` (the same examples training held out); without that, all of
    ``dataset``. ``max_samples`` limits each dataset. Each row holds a pickled example
    (``_example``) and its file and line (``_where``).

    Returns:
        (dataset, which data it is in words, the skipped-record tally or None).

    Raises:
        DataError: before anything is read, when there is no data or a name is unknown.
    """
    d = cfg.data
    train_specs, eval_specs = check_data(cfg)
    counter = new_bad_record_counter() if d.skip_bad_records else None
    if eval_specs:
        parts = [_examples(s, cfg, counter, num_cpus) for s in eval_specs]
        return _mix(parts, cfg), f"eval_dataset {','.join(d.eval_dataset or [])}", counter
    if not train_specs:
        raise DataError("no data to predict for: set eval_dataset (or dataset)", where="dataset")
    examples = _mix([_examples(s, cfg, counter, num_cpus) for s in train_specs], cfg)
    names = ",".join(d.dataset or [])
    if d.val_size <= 0:
        return examples, f"dataset {names}", counter
    return (
        val_split(examples, cfg, True, num_cpus),
        f"the val_size {d.val_size:g} split of dataset {names}",
        counter,
    )


# ---- tokenized_path ----------------------------------------------------------------------------


def _cache_settings(cfg: Config, packed: bool) -> dict[str, Any]:
    d = cfg.data
    return {
        **asdict(TextSettings.of(cfg)),
        "dataset": d.dataset,
        "eval_dataset": d.eval_dataset,
        "val_size": d.val_size,
        "max_samples": d.max_samples,
        "packed": packed,
        "neat_packing": d.neat_packing,
    }


def _read_cache(cfg: Config, packed: bool) -> tuple[Any, Any] | None:
    d = cfg.data
    if not d.tokenized_path or d.overwrite_cache:
        return None
    root = Path(d.tokenized_path).resolve()
    meta = root / "settings.json"
    if not meta.is_file():
        return None
    import ray.data

    saved, wanted = json.loads(meta.read_text()), _cache_settings(cfg, packed)
    changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
    if changed:
        raise DataError(
            f"was made with other settings ({', '.join(changed)} differ); set "
            "overwrite_cache: true to tokenise again, or use another tokenized_path",
            where=f"tokenized_path {d.tokenized_path}",
        )
    parts = [root / "train", root / "eval"]
    return tuple(ray.data.read_parquet(str(p)) if p.is_dir() else None for p in parts)  # type: ignore[return-value]


def _write_cache(cfg: Config, packed: bool, prepared: PreparedData) -> None:
    """Write the tokenised datasets as Parquet into a fresh folder, then move it into place."""
    import shutil
    import tempfile

    root = Path(cfg.data.tokenized_path).resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for name, ds in (("train", prepared.train), ("eval", prepared.eval)):
            if ds is not None:
                ds.write_parquet(str(staging / name))
        (staging / "settings.json").write_text(json.dumps(_cache_settings(cfg, packed), indent=2))
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
