"""raytune_llm: fine-tune, tune, evaluate, serve and export LLMs from one YAML file, on Ray.

The package root imports nothing heavy: `raytune-llm --help` and `raytune-llm validate` must
answer without loading torch, ray or transformers.
"""

__version__ = "0.1.0"
