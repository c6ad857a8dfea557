"""Keep third-party start-up chatter that carries no information for the user out of the logs."""

from __future__ import annotations

import logging
import os


def quiet_third_party(has_cuda: bool) -> None:
    """Silence messages that only describe a missing optional speed-up.

    Args:
        has_cuda: whether a CUDA device is visible; without one DeepSpeed is told it runs on the
            CPU accelerator instead of guessing and warning that it guessed.
    """
    quiet_bitsandbytes()
    if not has_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def quiet_bitsandbytes() -> None:
    """bitsandbytes tries to fetch an optional CPU kernel from the hub when it is imported and
    warns when it cannot; raytune-llm never downloads at run time, so the warning is noise.
    Call before peft or transformers may import it (a training worker calls it first thing)."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
