"""Checks that an upload to the Hugging Face hub can work, made before any work starts.

Shared by training's ``push_to_hub`` and export's ``export_hub_model_id``: a run is never
trained or exported only to find at the end that it cannot be pushed.
"""

from __future__ import annotations

import os

from .errors import UserError

_TRUE = {"1", "ON", "YES", "TRUE"}


def offline_variable() -> str | None:
    """The variable that puts huggingface_hub offline, if one does (as huggingface_hub reads)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").upper() in _TRUE:
            return name
    return None


def check_hub_access(
    token: str | None, subject: str, off: str, login: str, timeout: float = 10.0
) -> None:
    """Refuse an upload up front when it could not work.

    Checks, cheapest first: huggingface_hub's offline switch, a token (``token``, HF_TOKEN or a
    saved login), then one whoami call to the endpoint with a short timeout.

    Args:
        token: the config's token, if it gives one.
        subject: what asks for the upload, as the messages start ("push_to_hub is true").
        off: how to go without uploading ("set push_to_hub: false to train without uploading").
        login: how to get a token ("log in with `hf auth login` ... or set HF_TOKEN").
        timeout: seconds to wait for the hub's answer.

    Raises:
        UserError: naming the subject, what is wrong and what to do.
    """
    offline = offline_variable()
    if offline:
        raise UserError(
            f"{subject} but the Hugging Face hub is switched off here "
            f"({offline}={os.environ[offline]}); unset {offline} to upload, or {off}"
        )
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    token = token or get_token()
    if not token:
        raise UserError(f"{subject} but no Hugging Face token was found: {login}, or {off}")
    endpoint = constants.ENDPOINT
    try:
        response = get_session().get(
            f"{endpoint}/api/whoami-v2", headers=build_hf_headers(token=token), timeout=timeout
        )
    except Exception as err:  # any transport failure: refused, timed out, no route, bad proxy
        raise UserError(
            f"{subject} but the hub at {endpoint} cannot be reached "
            f"({type(err).__name__}: {err}); check the network and HF_ENDPOINT, or {off}"
        ) from None
    try:
        hf_raise_for_status(response)
    except HfHubHTTPError as err:
        if response.status_code == 401:
            raise UserError(
                f"{subject} but the hub at {endpoint} does not accept the token (not "
                f"logged in): {login} with a valid write token, or {off}"
            ) from None
        raise UserError(
            f"{subject} but the hub at {endpoint} answered {response.status_code} "
            f"({err}); try again later, or {off}"
        ) from None
    try:
        role = response.json().get("auth", {}).get("accessToken", {}).get("role")
    except ValueError:  # some other web server answered
        raise UserError(
            f"{subject} but {endpoint} does not answer as a Hugging Face hub; check "
            f"HF_ENDPOINT, or {off}"
        ) from None
    if role == "read":
        raise UserError(
            f"{subject} but the token is read-only; {login} with a write token, or {off}"
        )
