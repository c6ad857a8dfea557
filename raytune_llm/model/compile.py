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

from typing import Any

from ..utils.errors import UserError


def layer_classes(model: Any) -> set[str]:
    """The class names of a model's repeated blocks (its ``_no_split_modules``)."""
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
            f"kernels with one) and none was found ({err}); install g++ (apt install g++) or "
            "set CXX, or set torch_compile: false"
        ) from None


def compile_layers(model: Any, classes: set[str] | None = None) -> int:
    """Compile, in place, the ``forward`` of each child module of every decoder layer.

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
            "(its _no_split_modules names none); set torch_compile: false"
        )
    parts = [part for layer in layers for part in layer.children()]
    for part in parts:
        part.forward = torch.compile(part.forward)
    return len(parts)
