# ray job submit --address http://127.0.0.1:8265 --runtime-env jobs/runtime_env.yaml -- python jobs/train.py examples/demo/tiny_lora_sft.yaml  # noqa: E501
"""Ray Jobs entry point for ``raytune-llm train``: the same run, from the same YAML.

    python jobs/train.py CONFIG [KEY=VALUE ...]

is ``raytune-llm train CONFIG [KEY=VALUE ...]``. Submitted with ``ray job submit``, the script
runs as the job's driver on the cluster's head node: run_training joins that cluster (Ray sets
RAY_ADDRESS for a job) instead of starting a local Ray. See jobs/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from a checkout without the package installed: working_dir "." puts the checkout on
# PYTHONPATH for the job, and this line does the same for a plain ``python jobs/train.py``.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raytune_llm.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
