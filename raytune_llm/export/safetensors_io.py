"""Safetensors read and written one tensor at a time, so memory holds one tensor, not one model.

The ``safetensors`` library writes a file from a dict of tensors that must all be in memory, and
its reader memory-maps the whole file (every page read stays resident while it is open). Export
needs neither: each weight is read, merged and written before the next, so a model larger than
RAM still merges. The format is small (safetensors' README): 8 bytes of header length
(little-endian), a JSON header ``{name: {dtype, shape, data_offsets}, "__metadata__": {...}}``
padded with spaces, then the tensors' bytes in the header's order. Files written here load with
``safetensors.safe_open`` and ``from_pretrained`` (tested).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip
NAMES = {dtype: name for name, dtype in DTYPES.items()}
INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies in a file, and what it is."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset in the file
    nbytes: int


def read_header(path: str | Path) -> list[TensorInfo]:
    """The tensors of one .safetensors file, in file order, without reading their data."""
    path = Path(path)
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    out = []
    for name, meta in header.items():
        begin, end = meta["data_offsets"]
        out.append(TensorInfo(name, DTYPES[meta["dtype"]], tuple(meta["shape"]), path,
                              8 + size + begin, end - begin))  # fmt: skip
    return sorted(out, key=lambda t: t.start)


def read_tensor(info: TensorInfo) -> torch.Tensor:
    """One tensor's data, read with a plain file read (nothing stays mapped afterwards)."""
    tensor = torch.empty(info.shape, dtype=info.dtype)
    if not info.nbytes:
        return tensor
    with info.file.open("rb", buffering=0) as f:
        f.seek(info.start)
        got = f.readinto(tensor.reshape(-1).view(torch.uint8).numpy().data)
    if got != info.nbytes:
        raise OSError(f"{info.file} ends inside tensor {info.name}: the file is truncated")
    return tensor


def model_files(folder: str | Path) -> list[Path] | None:
    """The .safetensors weight files of a model folder (sharded or not), or None if it has none."""
    folder = Path(folder)
    index = folder / INDEX
    if index.is_file():
        names = dict.fromkeys(json.loads(index.read_text())["weight_map"].values())
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else None


@dataclass(frozen=True)
class OutTensor:
    """A tensor to write: its name, dtype and shape (its data comes later, from a callback)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n


def plan_shards(tensors: Iterable[OutTensor], max_bytes: int) -> list[list[OutTensor]]:
    """Group tensors in order into shards of at most ``max_bytes`` (a bigger tensor goes alone),
    as transformers' ``max_shard_size`` does."""
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return [s for s in shards if s]


def shard_names(n: int, stem: str = "model", ext: str = "safetensors") -> list[str]:
    """``model.safetensors`` for one shard, else ``model-00001-of-00003.safetensors`` ..."""
    if n == 1:
        return [f"{stem}.{ext}"]
    return [f"{stem}-{i:05d}-of-{n:05d}.{ext}" for i in range(1, n + 1)]


def write_file(
    path: Path, tensors: list[OutTensor], data: Callable[[OutTensor], torch.Tensor]
) -> None:
    """Write one .safetensors file, asking ``data`` for each tensor just before writing it."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                          "data_offsets": [offset, offset + t.nbytes]}  # fmt: skip
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for t in tensors:
            value = data(t).to(t.dtype).contiguous()
            if tuple(value.shape) != t.shape:
                raise ValueError(f"{t.name}: planned shape {t.shape}, got {tuple(value.shape)}")
            if value.numel():
                f.write(value.reshape(-1).view(torch.uint8).numpy().data)


def write_index(folder: Path, shards: list[list[OutTensor]], names: list[str], index: str) -> None:
    """The ``*.index.json`` transformers reads for a sharded model."""
    weight_map = {t.name: name for shard, name in zip(shards, names, strict=True) for t in shard}
    total = sum(t.nbytes for shard in shards for t in shard)
    body = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / index).write_text(json.dumps(body, indent=2) + "\n")
