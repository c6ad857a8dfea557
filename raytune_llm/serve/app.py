"""The Ray Serve application of ``raytune-llm serve``: an OpenAI-compatible API over the model.

    raytune-llm serve examples/serve/tiny_serve.yaml

Two deployments: ``OpenAIIngress`` (FastAPI: routes, API key, request checks, SSE) and
``ModelServer`` (see :mod:`.model`), which the ingress calls with the request's adapter as the
multiplexed model id. With ``infer_backend: vllm`` the application is ray.serve.llm's
``build_openai_app`` instead (see :mod:`.vllm`). On KubeRay, serveConfigV2 imports
``raytune_llm.serve.app:build_app`` with ``args: {config: /config/FILE.yaml}``.
"""

from __future__ import annotations

import hmac
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from ..config import Config, load_config
from ..config.serve import ServeArgs
from . import protocol as api
from .model import ModelServer
from .settings import (
    api_key,
    base_name,
    replica_resources,
    scaling_options,
    serve_args,
    served_adapters,
)

app = FastAPI(title="raytune-llm", docs_url=None, redoc_url=None)
OPEN_PATHS = ("/health",)


@app.middleware("http")
async def _require_key(request: Request, call_next: Any) -> Any:
    """Every route but /health needs ``Authorization: Bearer KEY`` when a key is set."""
    key = getattr(request.app.state, "api_key", None)
    path = request.url.path.removeprefix(request.scope.get("root_path", "").rstrip("/"))
    if key and path not in OPEN_PATHS:
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), key.encode()):
            what = "wrong API key" if token else "missing API key (Authorization: Bearer KEY)"
            return JSONResponse(
                api.error_body(what, "authentication_error", code="invalid_api_key"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    return await call_next(request)


@app.exception_handler(api.ServeError)
async def _serve_error(request: Request, err: api.ServeError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


@app.exception_handler(Exception)
async def _server_error(request: Request, err: Exception) -> JSONResponse:
    """Anything unexpected (a replica lost, a bug): a 500 in OpenAI's form; the server stays up."""
    message = f"internal error: {type(err).__name__}: {err}"
    return JSONResponse(api.error_body(message, "server_error"), status_code=500)


@app.exception_handler(RequestValidationError)
async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
    problems = err.errors()
    first = problems[0] if problems else {}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    if first.get("type") == "json_invalid":
        message, loc = "the body is not valid JSON", []
    else:
        message = "; ".join(
            f"{'.'.join(str(x) for x in p['loc'] if x != 'body') or 'body'}: {p['msg']}"
            for p in problems
        )
    return JSONResponse(api.error_body(message, param=".".join(loc) or None), status_code=400)


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class OpenAIIngress:
    """The HTTP routes; generation happens in the ModelServer replicas."""

    def __init__(
        self,
        model: DeploymentHandle,
        base: str,
        adapters: list[str],
        key: str | None,
        reward: bool = False,
    ):
        self.model, self.base, self.adapters = model, base, list(adapters)
        self.reward = reward  # a reward model: it scores, it does not generate
        self.created = int(time.time())
        app.state.api_key = key

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._card(m) for m in [self.base, *self.adapters]]}

    @app.get("/v1/models/{model_id}")
    async def model(self, model_id: str) -> dict[str, Any]:
        self._adapter(model_id)
        return self._card(model_id)

    def _card(self, model_id: str) -> dict[str, Any]:
        card = {
            "id": model_id,
            "object": "model",
            "created": self.created,
            "owned_by": "raytune-llm",
            "root": self.base,
        }
        card["parent"] = self.base if model_id != self.base else None
        return card

    def _adapter(self, model: str) -> str | None:
        """The adapter a model name picks (None: the base), or a 404."""
        if model == self.base:
            return None
        if model in self.adapters:
            return model
        served = ", ".join([self.base, *self.adapters])
        raise api.ServeError(
            404,
            f"model {model!r} does not exist; served: {served}",
            param="model",
            code="model_not_found",
        )

    @app.post("/v1/chat/completions")
    async def chat(self, body: api.ChatRequest) -> Any:
        messages, system = body.conversation()
        payload = {"adapter": self._adapter(body.model), "messages": messages, "system": system}
        return await self._answer(body, payload, chat=True)

    @app.post("/v1/completions")
    async def completions(self, body: api.CompletionRequest) -> Any:
        payload = {"adapter": self._adapter(body.model), "prompt": body.text()}
        return await self._answer(body, payload, chat=False)

    @app.post("/v1/score/evaluation")
    async def score(self, body: api.ScoreRequest) -> dict[str, Any]:
        if not self.reward:
            raise api.ServeError(
                400, "this server serves a generating model; scoring needs a reward model "
                "(serve a config with stage: rm)", param="model",
            )  # fmt: skip
        self._adapter(body.model)
        done = await self.model.score.remote(body.messages, body.max_length)
        api.raise_for(done)
        return {"id": api.new_id("scoreeval"), "object": "score.evaluation",
                "model": body.model, "scores": done["scores"]}  # fmt: skip

    async def _answer(self, body: Any, payload: dict[str, Any], chat: bool) -> Any:
        if self.reward:
            raise api.ServeError(
                400, "this server serves a reward model (stage: rm): it scores texts at "
                "POST /v1/score/evaluation and does not generate", param="model",
            )  # fmt: skip
        handle = self.model
        if payload["adapter"] is not None:
            handle = handle.options(multiplexed_model_id=payload["adapter"])
        rid = api.new_id("chatcmpl" if chat else "cmpl")
        if not body.stream:
            done = await handle.complete.remote(payload, body.overrides())
            api.raise_for(done)
            return api.response(rid, body.model, done, chat)
        pieces = handle.options(stream=True).stream.remote(payload, body.overrides())
        first = await pieces.__anext__()
        api.raise_for(first)
        return StreamingResponse(
            self._sse(pieces, rid, body, chat, first["prompt_tokens"]),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def _sse(
        self, pieces: Any, rid: str, body: Any, chat: bool, prompt_tokens: int
    ) -> AsyncIterator[str]:
        def event(data: dict[str, Any]) -> str:
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        tokens = 0
        if chat:
            yield event(api.chunk(rid, body.model, chat, None, first=True))
        async for piece in pieces:
            if "error" in piece:
                yield event(api.error_body(piece["error"]["message"], "server_error"))
                break
            tokens = piece["tokens"]
            yield event(api.chunk(rid, body.model, chat, piece["delta"], piece["finish_reason"]))
        if body.include_usage:
            yield event(api.usage_chunk(rid, body.model, chat, prompt_tokens, tokens))
        yield "data: [DONE]\n\n"


def build_application(cfg: Config, args: ServeArgs | None = None) -> Any:
    """The Serve application for a validated config (ray.serve.llm's with infer_backend vllm)."""
    args = args or serve_args(cfg)
    if cfg.model.infer_backend == "vllm":
        from .vllm import build_vllm_app

        return build_vllm_app(cfg, args)
    if cfg.finetuning.stage == "rm":
        return _reward_application(cfg, args)
    adapters = served_adapters(cfg, args)
    base = base_name(cfg, args)
    model = serve.deployment(ModelServer).options(
        name="ModelServer",
        ray_actor_options=replica_resources(cfg, args),
        max_ongoing_requests=args.max_ongoing_requests,
        **scaling_options(args),
    )
    ingress = OpenAIIngress.options(max_ongoing_requests=4 * args.max_ongoing_requests)
    return ingress.bind(
        model.bind(
            cfg,
            base,
            adapters,
            args.max_adapters_per_replica,
            args.batching,
            args.max_batch_size,
            args.batch_wait_timeout_s,
        ),
        base,
        list(adapters),
        api_key(args),
    )


def _reward_application(cfg: Config, args: ServeArgs) -> Any:
    """A reward model behind the same ingress: one scoring route, the rest refused."""
    from .score import RewardScorer

    scorer = serve.deployment(RewardScorer).options(
        name="RewardScorer",
        ray_actor_options=replica_resources(cfg, args),
        max_ongoing_requests=args.max_ongoing_requests,
        **scaling_options(args),
    )
    ingress = OpenAIIngress.options(max_ongoing_requests=4 * args.max_ongoing_requests)
    return ingress.bind(scorer.bind(cfg), base_name(cfg, args), [], api_key(args), True)


def build_app(args: dict[str, Any]) -> Any:
    """Serve's application builder (serveConfigV2 ``import_path``): ``args`` = {config, overrides}.

    ``config`` is the YAML file; ``overrides`` an optional list of KEY=VALUE strings.
    """
    if "config" not in args:
        raise ValueError("build_app needs args: {config: PATH.yaml}")
    cfg = load_config(args["config"], list(args.get("overrides") or []))
    return build_application(cfg)


def start(cfg: Config, args: ServeArgs) -> str:
    """Deploy the application on Ray (joining ray_address, else a local instance); its URL."""
    from ..utils.cluster import connect

    connect(cfg.ray.ray_address, cfg.ray.ray_init_kwargs)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_application(cfg, args), name="llm", route_prefix=args.route_prefix)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    return f"http://{host}:{args.port}{args.route_prefix.rstrip('/')}/v1"


def _stop_on_sigterm() -> None:
    """SIGTERM (what Kubernetes, systemd and ``kill`` send) stops the server as Ctrl-C does.

    Ray's driver answers SIGTERM by exiting from inside its own handler, which aborts with a
    stack dump while Serve's actors still run; raising KeyboardInterrupt in the main thread
    instead lets the caller shut Serve down and exit cleanly.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def serve_forever(cfg: Config, args: ServeArgs) -> None:
    """Start the API, print where it is, block until Ctrl-C or SIGTERM, then shut Serve down."""
    url = start(cfg, args)
    _stop_on_sigterm()  # after ray.init, which installs its own handler
    names = [base_name(cfg, args), *served_adapters(cfg, args)]
    print(f"serving {', '.join(names)} at {url} (OpenAI-compatible)", flush=True)
    print(f"  models: curl {url}/models", flush=True)
    if api_key(args):
        print("  every route but /health needs: Authorization: Bearer $KEY", flush=True)
    print("  Ctrl-C (or SIGTERM) stops it", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nshutting down", flush=True)
    finally:
        serve.shutdown()
