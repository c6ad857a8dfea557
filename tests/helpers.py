"""Small helpers shared by the tests (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeHub:
    """A local stand-in for the Hugging Face hub, which cannot run here: the endpoints an upload
    uses (whoami, create repo, validate a model card, preupload, commit), keeping the files.

    Args:
        role: what whoami says of the token ("write", "read"); None answers 401 (bad token).
    """

    def __init__(self, role: str | None = "write") -> None:
        self.files: dict[str, bytes] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/whoami-v2" and role is None:
                    self._reply(401, {"error": "Invalid credentials in Authorization header"})
                elif self.path == "/api/whoami-v2":
                    self._reply(200, {"name": "me", "auth": {"accessToken": {"role": role}}})
                else:
                    self._reply(404, {"error": "not here"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                repo = "/".join(self.path.split("/")[3:5])
                if self.path == "/api/repos/create":
                    name = json.loads(body)["name"]
                    self._reply(200, {"url": f"{hub.url}/me/{name}"})
                elif self.path == "/api/validate-yaml":  # a README.md's model-card header
                    self._reply(200, {})
                elif "/preupload/" in self.path:
                    files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                             for f in json.loads(body)["files"]]  # fmt: skip
                    self._reply(200, {"files": files})
                elif "/commit/" in self.path:
                    for op in map(json.loads, body.decode().splitlines()):
                        if op["key"] == "file":
                            value = op["value"]
                            hub.files[value["path"]] = base64.b64decode(value["content"])
                    self._reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{'a' * 40}",
                                      "commitOid": "a" * 40})  # fmt: skip
                else:
                    self._reply(404, {"error": "not here"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class LocalBoard:
    """The ProgressBoard actor's interface (``push.remote``), kept in this process."""

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.push = type("Push", (), {"remote": staticmethod(self.entries.append)})


def train_in_local_mode(cfg, datasets: dict, rows: int, packed: bool, storage) -> tuple:
    """Run the real worker loop in Ray Train's local mode (no cluster) on in-memory shards
    (objects with ``iter_batches``); returns (the board's entries, Ray Train's result)."""
    import ray.train
    import torch
    from ray.train.torch import TorchTrainer

    from raytune_llm.train.launch import Workers, _engine_plan, _plan
    from raytune_llm.train.worker import train_loop_per_worker

    workers = Workers(1, {"CPU": 1.0}, False, 0.25, 2, "PACK")
    plan = _plan(cfg, rows, workers, "eval" in datasets, packed, _engine_plan(cfg, 1))
    board, threads = LocalBoard(), torch.get_num_threads()
    try:
        result = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": cfg, "plan": plan, "board": board},
            scaling_config=ray.train.ScalingConfig(num_workers=0),
            run_config=ray.train.RunConfig(name="local", storage_path=str(storage)),
            datasets=datasets,
        ).fit()
    finally:
        torch.set_num_threads(threads)
    return board.entries, result
