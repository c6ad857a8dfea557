"""The validated configuration of a run: one YAML file of flat LLaMA-Factory keys + overrides.

Importing this package loads pydantic and PyYAML only: no torch, ray or transformers.
"""

from .config import KEY_OWNER, NESTED_SECTIONS, SECTIONS, Config, field_info
from .errors import ConfigError, Problem
from .finetuning import STAGES
from .loader import load_config, parse_override

__all__ = [
    "KEY_OWNER",
    "NESTED_SECTIONS",
    "SECTIONS",
    "STAGES",
    "Config",
    "ConfigError",
    "Problem",
    "field_info",
    "load_config",
    "parse_override",
]
