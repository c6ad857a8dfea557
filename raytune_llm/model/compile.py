"""``torch_compile: true``: regional compilation of the parts of each decoder layer.

Compiling a whole causal LM costs minutes and, with padding-free batches (a new row length every
step) and per-example attention (a Python loop over the row's examples), it recompiles and
breaks its graph often. The decoder layers are where the time goes and they are all alike, so
the ``forward`` of each part of a layer -- its norms, its attention block, its MLP -- is compiled
with ``torch.compile`` (inductor) and the compiled code is shared by every layer: one
compilation for the first shape, one more when shapes turn out to vary (then compiled for
dynamic lengths). The element-wise work (RMSNorm, rotary embeddings, SwiGLU, the LoRA updates and
their backward) then runs as a few fused kernels.

The parts are compiled rather than the layer: gradient checkpointing wraps the layer's forward
in ``torch.utils.checkpoint``, which the compiler cannot see through (a compiled layer would run
uncompiled inside it), and the hooks that FSDP puts on a layer to gather its parameters stay
outside the compiled code. Attention implementations that cannot be traced (``sdpa_varlen``'s
per-example loop) are excluded where they are defined and run eagerly between compiled parts.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

from ..utils.errors import UserError

# Variants a part may need: with and without gradients (evaluation, gradient checkpointing's
# first pass), a first and dynamic lengths, with and without a mask, the first layer's input
# that needs no gradient. Past dynamo's default of 8 a function would quietly run uncompiled.
RECOMPILE_LIMIT = 32


def layer_classes(model: Any, named: str | Iterable[str] | None = None) -> set[str]:
    """The class names of a model's repeated blocks: ``named`` when given (a config's
    ``transformer_layer_cls_to_wrap``), else the model's ``_no_split_modules``."""
    if isinstance(named, str):
        named = [named]
    if named:
        return set(named)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(getattr(base, "_no_split_modules", None) or [])


def check_compiler() -> None:
    """Raise a UserError unless inductor finds the C++ compiler it builds CPU kernels with."""
    from torch._inductor import exc
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except (exc.InvalidCxxCompiler, OSError) as err:
        raise UserError(
            "torch_compile: true needs a C++ compiler on CPU workers (inductor builds its "
            f"kernels with one) and none was found ({err}); install g++ (apt install g++) on "
            "every node, or set torch_compile: false"
        ) from None


def _computes(module: Any) -> bool:
    """Whether a layer's child is worth compiling: containers are never called, and modules
    without parameters (dropout, activations) hold no work of their own."""
    from torch import nn

    if isinstance(module, nn.ModuleList | nn.ModuleDict):
        return False
    return next(module.parameters(), None) is not None


def compile_layers(model: Any, classes: set[str] | None = None) -> int:
    """Compile, in place, the ``forward`` of each child module of every decoder layer.

    Each class's ``forward`` is compiled once and bound to each of its modules, so the modules
    still copy (``copy.deepcopy``: the copy runs its own weights) and pickle.

    Args:
        model: a transformers model, PEFT-wrapped or not.
        classes: the layer class names; by default the model's ``_no_split_modules``.

    Returns:
        How many modules were compiled.

    Raises:
        UserError: when the model names no repeated block to compile.
    """
    import torch

    names = classes or layer_classes(model)
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise UserError(
            f"torch_compile: found no decoder layer to compile in {type(model).__name__} "
            "(its _no_split_modules names none); name the layer class in "
            "fsdp_config.transformer_layer_cls_to_wrap, or set torch_compile: false"
        )
    compiled: dict[type, Any] = {}
    parts = [part for layer in layers for part in layer.children() if _computes(part)]
    for part in parts:
        cls = type(part)
        if cls not in compiled:
            compiled[cls] = torch.compile(cls.forward, recompile_limit=RECOMPILE_LIMIT)
        part.forward = types.MethodType(compiled[cls], part)
    return len(parts)
