# ray job submit --address http://127.0.0.1:8265 --runtime-env jobs/runtime_env.yaml -- python jobs/tune.py examples/tune/tiny_lora_sweep.yaml  # noqa: E501
"""Ray Jobs entry point for ``raytune-llm tune``: the same sweep, from the same YAML.

    python jobs/tune.py CONFIG [KEY=VALUE ...]

is ``raytune-llm tune CONFIG [KEY=VALUE ...]``. Submitted with ``ray job submit``, the script
runs as the job's driver on the cluster's head node, and the sweep's trials are spread over the
cluster's nodes (Ray sets RAY_ADDRESS for a job, so no local Ray is started). See jobs/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from a checkout without the package installed: working_dir "." puts the checkout on
# PYTHONPATH for the job, and this line does the same for a plain ``python jobs/tune.py``.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raytune_llm.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
