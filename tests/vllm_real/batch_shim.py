"""A Batch API in front of vLLM's own batch runner: /v1/files and /v1/batches as OpenAI serves
them, each batch's input file run through `python -m vllm.entrypoints.openai.run_batch -i ... -o ...`
and its output file served back. So the JSONL files our stages send OpenAI are read by a consumer
we did not write, and what it writes is read back by our batch reader (huatuo_o1/batch.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

from aiohttp import web

from huatuo_o1.testing.vllm_server import REPO, engine_args, engine_env


class RunBatchShim:
    """`with RunBatchShim(python, model, folder) as shim:` serves shim.url; every batch is one
    run_batch process (its log beside the files), run while its create call waits; `shim.runs`
    lists (input, output) paths."""

    def __init__(self, python: str | Path, model: str | Path, folder: Path, served_name: str = "smol"):
        self.python, self.model, self.folder, self.served_name = str(python), str(model), folder, served_name
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.runs: list[tuple[Path, Path]] = []
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _file(self, data: bytes, filename: str, purpose: str) -> dict:
        fid = f"file-{len(self.files) + 1}"
        path = self.folder / f"{fid}.jsonl"
        path.write_bytes(data)
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}  # fmt: skip
        self.files[fid] = {"meta": meta, "path": path}
        return meta

    def _run(self, b: dict) -> None:
        """Run vLLM's batch runner on the batch's input file (a worker thread)."""
        src = self.files[b["input_file_id"]]["path"]
        dst = self.folder / f"{b['id']}.output.jsonl"
        log = (self.folder / f"{b['id']}.run_batch.log").open("wb")
        cmd = [self.python, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(src), "-o", str(dst),
               *engine_args(self.model, self.served_name)]  # fmt: skip
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=engine_env(), cwd=REPO)
        log.close()
        self.runs.append((src, dst))
        if code != 0 or not dst.exists():
            b["status"] = "failed"
            b["errors"] = {
                "object": "list",
                "data": [{"code": "run_batch", "message": f"exit {code}", "line": None}],
            }
            return
        meta = self._file(dst.read_bytes(), dst.name, "batch_output")
        b["output_file_id"] = meta["id"]
        b["status"] = "completed"

    def _app(self) -> web.Application:
        async def upload(request):
            form = await request.post()
            part = form["file"]
            return web.json_response(self._file(part.file.read(), part.filename, form.get("purpose", "")))

        async def content(request):
            f = self.files[request.match_info["fid"]]
            return web.Response(body=f["path"].read_bytes(), content_type="application/octet-stream")

        async def create(request):
            body = json.loads(await request.read())
            bid = f"batch-{len(self.batches) + 1}"
            b = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                 "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                 "status": "in_progress", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "metadata": body.get("metadata")}  # fmt: skip
            self.batches[bid] = b
            # answered before the create call returns: the stage's first poll finds it ended, instead
            # of its backoff (doubling up to minutes) waiting past the run
            await asyncio.get_running_loop().run_in_executor(None, self._run, b)
            return web.json_response(b)

        async def get(request):
            return web.json_response(self.batches[request.match_info["bid"]])

        async def listing(request):
            data = list(reversed(self.batches.values()))
            return web.json_response({"object": "list", "data": data, "has_more": False})

        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/files", upload)
        app.router.add_get("/v1/files/{fid}/content", content)
        app.router.add_post("/v1/batches", create)
        app.router.add_get("/v1/batches", listing)
        app.router.add_get("/v1/batches/{bid}", get)
        return app

    def __enter__(self) -> RunBatchShim:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def serve():
            async def main():
                runner = web.AppRunner(self._app(), access_log=None)
                await runner.setup()
                await web.SockSite(runner, sock).start()
                self._stop = asyncio.Event()
                ready.set()
                await self._stop.wait()
                await runner.cleanup()

            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
