"""dataset_info.json: LLaMA-Factory's registry of datasets, read strictly; where their files are.

Every entry is checked against LLaMA-Factory's schema (``data/README.md`` there) with pydantic
models that forbid unknown keys, and all problems of a file are reported at once, each with its
line. Source, defaults and column rules follow LLaMA-Factory's ``DatasetAttr``:

* the source is the first of ``hf_hub_url``, ``ms_hub_url``, ``om_hub_url``, ``script_url``,
  ``cloud_file_name``, ``file_name`` that is set;
* without a ``columns`` object the default columns apply (``instruction``, ``input``,
  ``output``, ``conversations``); with one, every column it does not name is unused. ``tags``
  works the same way (defaults ``from``/``value``/``human``/``gpt``/``observation``/
  ``function_call``/``system``);
* ``formatting: openai`` defaults to OpenAI's own names instead (``messages``; ``role``,
  ``content``, ``user``, ``assistant``, ``tool``, ``system``);
* ``dataset_dir: ONLINE`` makes every dataset name a Hugging Face hub id read as alpaca, and
  ``dataset_dir: REMOTE:<repo>`` reads dataset_info.json from a hub dataset repository.

:func:`dataset_files` lists what to read: the file, every data file of a folder (sorted; one
type), a ``cloud_file_name`` URL's files, or, for hub and script datasets, the Arrow cache files
that ``datasets`` writes once it has fetched the data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config.errors import did_you_mean
from .errors import DataError, json_kind

DATA_CONFIG = "dataset_info.json"
FORMATTINGS = ("alpaca", "sharegpt", "openai")
SOURCE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
SOURCE_KEYS += ("file_name",)
_LOAD_FROM = dict(
    zip(SOURCE_KEYS, ("hf_hub", "ms_hub", "om_hub", "script", "cloud_file", "file"), strict=True)
)
KINDS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
KINDS |= {".arrow": "arrow", ".txt": "text"}

Name = Annotated[str, Field(min_length=1)]
LoadFrom = Literal["hf_hub", "ms_hub", "om_hub", "script", "cloud_file", "file"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Columns(_Strict):
    """Which field of a record holds each part of an example; None means not used."""

    prompt: Name | None = Field(None, description="alpaca: the instruction; pt: the text")
    query: Name | None = Field(None, description="alpaca: input appended to the prompt")
    response: Name | None = Field(None, description="alpaca: the answer")
    history: Name | None = Field(None, description="alpaca: earlier [prompt, answer] pairs")
    messages: Name | None = Field(None, description="sharegpt/openai: the list of turns")
    system: Name | None = Field(None, description="the system prompt")
    tools: Name | None = Field(None, description="the tool descriptions (JSON)")
    images: Name | None = Field(None, description="image paths")
    videos: Name | None = Field(None, description="video paths")
    audios: Name | None = Field(None, description="audio paths")
    chosen: Name | None = Field(None, description="ranking: the preferred answer")
    rejected: Name | None = Field(None, description="ranking: the worse answer")
    kto_tag: Name | None = Field(None, description="kto: true/false feedback on the answer")


class Tags(_Strict):
    """Keys and role names inside sharegpt/openai turns; None means not used."""

    role_tag: Name | None = Field(None, description="key of a turn's role")
    content_tag: Name | None = Field(None, description="key of a turn's text")
    user_tag: Name | None = Field(None, description="role value of the user")
    assistant_tag: Name | None = Field(None, description="role value of the assistant")
    observation_tag: Name | None = Field(None, description="role value of tool results")
    function_tag: Name | None = Field(None, description="role value of tool calls")
    system_tag: Name | None = Field(None, description="role value of a leading system turn")


class DatasetEntry(_Strict):
    """One entry of dataset_info.json, as written (LLaMA-Factory's schema)."""

    hf_hub_url: Name | None = Field(None, description="dataset repository on the HF hub")
    ms_hub_url: Name | None = Field(None, description="dataset repository on ModelScope")
    om_hub_url: Name | None = Field(None, description="dataset repository on Modelers")
    script_url: Name | None = Field(None, description="folder in dataset_dir read by datasets")
    cloud_file_name: Name | None = Field(None, description="s3:// or gs:// JSON file/folder")
    file_name: Name | None = Field(None, description="file or folder in dataset_dir")
    formatting: Literal["alpaca", "sharegpt", "openai"] = "alpaca"
    ranking: bool = Field(False, description="preference data (chosen/rejected)")
    subset: Name | None = Field(None, description="hub subset (config) name")
    split: Name = Field("train", description="split to read")
    folder: Name | None = Field(None, description="folder inside the hub repository")
    num_samples: int | None = Field(None, gt=0, description="sample this many examples")
    revision: Name | None = Field(None, description="hub revision (older LLaMA-Factory)")
    file_sha1: str | None = Field(None, description="ignored (older LLaMA-Factory)")
    columns: Columns | None = None
    tags: Tags | None = None


class DatasetSpec(_Strict):
    """A dataset ready to read: its source plus the resolved columns and tags."""

    name: str
    load_from: LoadFrom
    source: str = Field(description="path relative to dataset_dir, hub id, or URL")
    formatting: Literal["alpaca", "sharegpt", "openai"] = "alpaca"
    ranking: bool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    revision: str | None = None
    columns: Columns
    tags: Tags


def default_columns(formatting: str) -> Columns:
    """LLaMA-Factory's columns for an entry without a ``columns`` object."""
    messages = "messages" if formatting == "openai" else "conversations"
    return Columns(prompt="instruction", query="input", response="output", messages=messages)


def default_tags(formatting: str) -> Tags:
    """LLaMA-Factory's tags for an entry without a ``tags`` object (OpenAI names for openai)."""
    if formatting == "openai":
        names = ("role", "content", "user", "assistant", "tool", "function_call", "system")
    else:
        names = ("from", "value", "human", "gpt", "observation", "function_call", "system")
    return Tags(**dict(zip(Tags.model_fields, names, strict=True)))


def make_spec(name: str, entry: DatasetEntry) -> DatasetSpec:
    """Resolve an entry's source and its default columns and tags."""
    key = next((k for k in SOURCE_KEYS if getattr(entry, k) is not None), None)
    if key is None:
        raise DataError(f"entry '{name}' names no source; set one of {', '.join(SOURCE_KEYS)}")
    fields = entry.model_dump(exclude={"columns", "tags", "file_sha1", *SOURCE_KEYS})
    return DatasetSpec(
        name=name,
        load_from=_LOAD_FROM[key],
        source=getattr(entry, key),
        columns=entry.columns or default_columns(entry.formatting),
        tags=entry.tags or default_tags(entry.formatting),
        **fields,
    )


def online_spec(name: str) -> DatasetSpec:
    """A hub dataset named directly (``dataset_dir: ONLINE``), read as alpaca like LLaMA-Factory."""
    return make_spec(name, DatasetEntry(hf_hub_url=name))


def load_registry(dataset_dir: str | Path) -> dict[str, DatasetSpec]:
    """Read and check ``dataset_dir/dataset_info.json``; every problem is reported at once.

    Raises:
        DataError: the folder or file is missing, the JSON is invalid (with its line), or
            entries have unknown keys, wrong values or no source (each with its line).
    """
    path = _info_path(dataset_dir)
    text = path.read_text(encoding="utf-8-sig")
    duplicates: list[str] = []
    try:
        raw = json.loads(text, object_pairs_hook=lambda pairs: _no_dups(pairs, duplicates))
    except json.JSONDecodeError as exc:
        where = f"{path}:{exc.lineno}"
        raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", where=where) from None
    if not isinstance(raw, dict):
        raise DataError(
            f"must hold a JSON object of entries, got {json_kind(raw)}", where=str(path)
        )
    problems = [f"duplicate key '{key}'" for key in duplicates]
    specs: dict[str, DatasetSpec] = {}
    for name, value in raw.items():
        at = f"line {_line_of(text, name)}, '{name}'"
        try:
            specs[name] = make_spec(name, DatasetEntry.model_validate(value))
        except ValidationError as exc:
            problems += [f"{at}: {_explain(err)}" for err in exc.errors()]
        except DataError as exc:
            problems.append(f"{at}: {exc.reason}")
    if problems:
        head = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise DataError("\n  - ".join([head, *problems]), where=str(path))
    return specs


def resolve_datasets(
    names: str | Sequence[str] | None, dataset_dir: str | Path
) -> list[DatasetSpec]:
    """Look up dataset names (a list, or one comma-separated string) in dataset_info.json.

    Raises:
        DataError: a name is not an entry (with a did-you-mean and the names defined), or the
            registry itself is wrong (see :func:`load_registry`).
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names or [])
    if str(dataset_dir) == "ONLINE":
        return [online_spec(n) for n in names]
    registry = load_registry(dataset_dir)
    unknown = [n for n in names if n not in registry]
    if unknown:
        defined = ", ".join(sorted(registry)) or "(none)"
        lines = [f"unknown dataset '{n}'{did_you_mean(n, registry)}" for n in unknown]
        where = str(_info_path(dataset_dir))
        raise DataError(f"{'; '.join(lines)}; dataset_info.json defines: {defined}", where=where)
    return [registry[n] for n in names]


def _info_path(dataset_dir: str | Path) -> Path:
    text = str(dataset_dir)
    if text.startswith("REMOTE:"):
        return _remote_info(text.removeprefix("REMOTE:"))
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise DataError(
            f"dataset_dir '{folder}' is not a folder; set dataset_dir to the folder holding "
            f"{DATA_CONFIG} (or ONLINE to read hub datasets by name)"
        )
    path = folder / DATA_CONFIG
    if not path.is_file():
        raise DataError(
            f"no {DATA_CONFIG} in '{folder}'; add one that describes the datasets "
            "(LLaMA-Factory's data/README.md shows the format)",
            where=str(path),
        )
    return path


def _remote_info(repo: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=DATA_CONFIG, repo_type="dataset"))
    except Exception as exc:
        raise DataError(
            f"cannot fetch {DATA_CONFIG} from hub dataset '{repo}': hub unreachable or offline "
            f"(HF_HUB_OFFLINE=1) and no cached copy ({type(exc).__name__})",
            where=f"REMOTE:{repo}",
        ) from None


def _no_dups(pairs: list[tuple[str, Any]], duplicates: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            duplicates.append(key)
        out[key] = value
    return out


def _line_of(text: str, name: str) -> int:
    match = re.search(rf"^\s*{re.escape(json.dumps(name))}\s*:", text, flags=re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 1


_MODELS: dict[str, type[BaseModel]] = {"columns": Columns, "tags": Tags}


def _explain(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "entry"
    given = err.get("input")
    if err["type"] == "extra_forbidden":
        model = _MODELS.get(loc[0], DatasetEntry) if len(loc) > 1 else DatasetEntry
        valid = [k for k in model.model_fields if k != "file_sha1"]
        return f"unknown key '{key}'{did_you_mean(loc[-1], valid)}; valid: {', '.join(valid)}"
    if err["type"] == "literal_error":
        return (
            f"{key}: {given!r} is not valid{did_you_mean(str(given), FORMATTINGS)}; "
            f"valid: {', '.join(FORMATTINGS)}"
        )
    if err["type"] in ("model_type", "model_attributes_type"):
        return f"{key}: must be a JSON object, got {json_kind(given)}"
    return f"{key}: {err['msg'].lower()}, got {json.dumps(given, default=str)}"


def file_kind(path: str) -> str:
    """Return the reader for a path by its extension (json, jsonl, csv, parquet, arrow, text)."""
    suffix = Path(path.split("://")[-1]).suffix.lower()
    if suffix not in KINDS:
        valid = ", ".join(KINDS)
        raise DataError(f"unsupported file type '{suffix}'; valid: {valid}", where=path)
    return KINDS[suffix]


def dataset_files(spec: DatasetSpec, dataset_dir: str | Path) -> list[str]:
    """The files holding a dataset: its file, every data file of its folder (sorted), or the
    Arrow cache files of a hub / script dataset after ``datasets`` has fetched it.

    Raises:
        DataError: the file or folder is missing, a folder mixes file types, or a hub dataset
            cannot be loaded (hub unreachable or offline).
    """
    if spec.load_from == "file":
        return _local_files(spec, Path(dataset_dir))
    if spec.load_from == "cloud_file":
        return _cloud_files(spec)
    return _hub_files(spec, Path(dataset_dir))


def _local_files(spec: DatasetSpec, dataset_dir: Path) -> list[str]:
    path = dataset_dir / spec.source
    where = f"dataset_info.json '{spec.name}'"
    if path.is_file():
        file_kind(str(path))
        return [str(path)]
    if not path.is_dir():
        raise DataError(
            f"file_name '{spec.source}': no such file or folder in '{dataset_dir}'", where=where
        )
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    folders = [p.name for p in entries if p.is_dir()]
    if folders:
        raise DataError(
            f"folder '{path}' holds sub-folders ({', '.join(folders)}); put the "
            "data files directly in it",
            where=where,
        )
    if not entries:
        raise DataError(f"folder '{path}' holds no data files", where=where)
    kinds = {file_kind(str(p)).replace("jsonl", "json") for p in entries}
    if len(kinds) > 1:
        found = ", ".join(sorted(kinds))
        raise DataError(f"folder '{path}' mixes file types ({found}); use one type", where=where)
    return [str(p) for p in entries]


def _cloud_files(spec: DatasetSpec) -> list[str]:
    import pyarrow.fs as pafs

    url = spec.source
    try:
        fs, root = pafs.FileSystem.from_uri(url)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(root))
            paths = sorted(i.path for i in found if i.type == pafs.FileType.File)
        elif info.type == pafs.FileType.File:
            paths = [root]
        else:
            raise FileNotFoundError(url)
    except Exception as exc:
        raise DataError(
            f"cannot read cloud_file_name '{url}': {type(exc).__name__}: {exc}",
            where=f"dataset_info.json '{spec.name}'",
        ) from None
    scheme = url.split("://")[0]
    files = [f"{scheme}://{p}" for p in paths]
    for f in files:
        file_kind(f)
    return files


def _hub_files(spec: DatasetSpec, dataset_dir: Path) -> list[str]:
    where = f"dataset_info.json '{spec.name}'"
    if spec.load_from in ("ms_hub", "om_hub"):
        return _other_hub_files(spec, where)
    source = spec.source if spec.load_from == "hf_hub" else str(dataset_dir / spec.source)
    try:
        import datasets

        ds = datasets.load_dataset(
            source, name=spec.subset, data_dir=spec.folder, split=spec.split, revision=spec.revision
        )
    except Exception as exc:
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if spec.load_from == "script":
            raise DataError(
                f"cannot load script_url '{source}' with datasets ({detail})", where=where
            ) from None
        raise DataError(
            f"cannot load hf_hub_url '{source}': hub unreachable or offline "
            f"(HF_HUB_OFFLINE=1) and no cached copy, or no such dataset/split "
            f"({detail})",
            where=where,
        ) from None
    return _arrow_cache_files(ds)


def _other_hub_files(spec: DatasetSpec, where: str) -> list[str]:
    if spec.load_from == "om_hub":
        raise DataError(
            f"om_hub_url '{spec.source}' (Modelers hub) is not supported; set "
            "hf_hub_url, or download the data and use file_name",
            where=where,
        )
    try:
        from modelscope import MsDataset  # type: ignore[import-not-found]
    except ImportError:
        raise DataError(
            f"ms_hub_url '{spec.source}' needs the modelscope package (pip install "
            "modelscope); or set hf_hub_url, or use file_name",
            where=where,
        ) from None
    try:
        ds = MsDataset.load(
            spec.source, subset_name=spec.subset, data_dir=spec.folder, split=spec.split
        ).to_hf_dataset()
    except Exception as exc:
        raise DataError(
            f"cannot load ms_hub_url '{spec.source}': hub unreachable or offline "
            f"({type(exc).__name__})",
            where=where,
        ) from None
    return _arrow_cache_files(ds)


def _arrow_cache_files(ds: Any) -> list[str]:
    if getattr(ds, "_indices", None) is not None:  # a sliced split ("train[:10%]")
        ds = ds.flatten_indices()
    if not ds.cache_files:  # held in memory: write it out once
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="raytune-hub-")) / "data.parquet"
        ds.to_parquet(str(path))
        return [str(path)]
    return [c["filename"] for c in ds.cache_files]
