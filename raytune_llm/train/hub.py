"""``push_to_hub``: upload output_dir to the Hugging Face hub when a run has finished.

As the Hugging Face Trainer (and so LLaMA-Factory) does: the repository is hub_model_id, or
output_dir's name in the token's namespace, created if missing (private with hub_private_repo),
and receives the adapter or model, the tokenizer, the results files and the logs; checkpoint-*
folders go only with hub_strategy checkpoint (the latest, as last-checkpoint/) or
all_checkpoints. The upload happens once, at the end of the run.

Before anything starts, :func:`check_hub` makes sure an upload can work (not offline, a token,
the endpoint answers and accepts it), so a run is never trained only to find it cannot be pushed.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..utils.errors import UserError
from ..utils.hub import check_hub_access

_OFF = "set push_to_hub: false to train without uploading"
_LOGIN = "log in with `hf auth login` (huggingface-cli login) or set HF_TOKEN or hub_token"


def check_hub(cfg: Config, timeout: float = 10.0) -> None:
    """Refuse push_to_hub up front when the upload at the end could not work.

    Checks, cheapest first: huggingface_hub's offline switch, a token (hub_token, HF_TOKEN or
    a saved login), then one whoami call to the endpoint with a short timeout.

    Raises:
        UserError: naming push_to_hub, what is wrong and what to do.
    """
    check_hub_access(cfg.train.hub_token, "push_to_hub is true", _OFF, _LOGIN, timeout)


def upload_patterns(out: Path, strategy: str) -> tuple[list[str], Path | None]:
    """What stays home (checkpoints, "_*" and hidden files, Ray Train's bookkeeping) and which
    checkpoint goes as last-checkpoint/."""
    ignore = ["_*", ".*", "checkpoint_manager_snapshot.json"]
    if strategy == "all_checkpoints":
        return ignore, None
    steps = sorted(
        (int(p.name.split("-")[1]), p) for p in out.glob("checkpoint-*") if p.name[11:].isdigit()
    )
    last = steps[-1][1] if strategy == "checkpoint" and steps else None
    return [*ignore, "checkpoint-*"], last


def push_output(cfg: Config, out: Path) -> str:
    """Upload a finished run's output_dir; returns the repository's id.

    Raises:
        UserError: when the upload fails, saying the trained output is still in output_dir.
    """
    from huggingface_hub import HfApi

    t = cfg.train
    wanted = t.hub_model_id or out.name
    api = HfApi(token=t.hub_token or None)
    ignore, last = upload_patterns(out, t.hub_strategy)
    try:
        repo = api.create_repo(wanted, private=t.hub_private_repo, exist_ok=True).repo_id
        api.upload_folder(
            repo_id=repo,
            folder_path=out,
            commit_message="End of training",
            ignore_patterns=ignore,
        )
        if last is not None:
            api.upload_folder(
                repo_id=repo,
                folder_path=last,
                path_in_repo="last-checkpoint",
                commit_message=f"Training in progress, {last.name}",
            )
    except Exception as err:  # network, permissions, quota: the run itself succeeded
        raise UserError(
            f"push_to_hub: training finished and the trained output is in {out}, but uploading "
            f"it to {wanted} failed ({type(err).__name__}: {err}); upload it later with "
            f"`hf upload {wanted} {out}`"
        ) from None
    return repo
