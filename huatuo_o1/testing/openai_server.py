"""A loopback HTTP server that speaks the OpenAI protocol with scripted replies: the GPT-4o double
of the tests and benchmarks (chat and completions endpoints, errors, latency, usage), and of the
Batch API (file upload and download, batches with scripted status sequences)."""

from __future__ import annotations

TERMINAL_BATCH_STATUSES = ("completed", "expired", "cancelled", "failed")


class FakeResponse:
    """A scripted reply: text for a 200 answer, or an HTTP error status with optional headers and
    OpenAI error `code` (e.g. "context_length_exceeded", "insufficient_quota"; default: the status).

    For a 200 answer, `finish_reason` (e.g. "length": cut at max_tokens) is set on every choice;
    `reasoning_content` adds a reasoning model's draft to each chat message, and `null_content`
    sends the message's `content` as null; `body` replaces the whole JSON body (e.g. a gateway's
    `{"error": {...}}` sent with status 200). `trickle` sends the body one byte every `trickle`
    seconds (a reply that never stalls long enough for a read timeout); `echo_auth` appends the
    request's Authorization header to the error message (a server that echoes credentials)."""

    def __init__(
        self,
        text: str | list[str] | None = None,
        status: int = 200,
        headers: dict | None = None,
        error: str = "scripted error",
        delay: float = 0.0,
        code: str | int | None = None,
        finish_reason: str = "stop",
        reasoning_content: str | None = None,
        null_content: bool = False,
        body: dict | None = None,
        cached_tokens: int = 0,
        trickle: float = 0.0,
        echo_auth: bool = False,
    ):
        self.trickle = trickle
        self.echo_auth = echo_auth
        self.text = text
        self.status = status
        self.headers = headers or {}
        self.error = error
        self.delay = delay
        self.code = code
        self.finish_reason = finish_reason
        self.reasoning_content = reasoning_content
        self.null_content = null_content
        self.body = body
        self.cached_tokens = cached_tokens


class FakeBatch:
    """How the server plays one batch.

    `statuses`: what GET /v1/batches/{id} answers, one step per poll (the last one stays); a batch
    that ends `completed` answers every request, one that ends `expired` or `cancelled` answers only
    its first `answered` requests (the rest get a `batch_expired` / `batch_cancelled` error line),
    one that ends `failed` answers none and reports `errors` (a list of {"code", "message", "line"}).
    `tamper_ids`: the results carry custom ids that do not match the requests (a confused proxy).
    `duplicate_errors`: every answered request also gets a 500 line under the same custom id in the
    error file (a provider that retried a request and reported both tries). `files_gone`: its output
    and error files are deleted as soon as it ends (files past their expiry, or removed by hand)."""

    def __init__(
        self,
        statuses=("validating", "in_progress", "completed"),
        answered: int = 0,
        errors: list[dict] | None = None,
        tamper_ids: bool = False,
        duplicate_errors: bool = False,
        files_gone: bool = False,
    ):
        self.statuses = list(statuses)
        self.answered = answered
        self.errors = errors
        self.tamper_ids = tamper_ids
        self.duplicate_errors = duplicate_errors
        self.files_gone = files_gone


class FakeRequest:
    """What the server received: path, JSON body, headers, and the prompt text for convenience."""

    def __init__(self, path: str, body: dict, headers: dict):
        self.path = path
        self.body = body
        self.headers = headers

    @property
    def prompt(self) -> str:
        if "messages" in self.body:
            return "\n".join(str(m.get("content", "")) for m in self.body["messages"])
        return str(self.body.get("prompt", ""))

    @property
    def n(self) -> int:
        return int(self.body.get("n") or 1)


class FakeOpenAIServer:
    """`with FakeOpenAIServer(responder) as srv:` serves http://127.0.0.1:<port>/v1 on an aiohttp
    (asyncio) server in a background thread; latency sleeps do not hold a thread each, so the double
    keeps up with thousands of requests/s and never caps a benchmark.

    responder: a callable FakeRequest -> str | list[str] | FakeResponse, or a list of those
    consumed in order (the last one repeats). `latency` adds a fixed delay to every request.
    Every request is recorded in `srv.requests` (path, body, headers) for assertions.
    `in_process=False` runs the server in a forked child process instead (benchmarks: keeps the
    server's CPU work off the client's GIL); requests are then not recorded.

    Batch API (`batch_api=True`; False answers 404 there, like a local server without it): POST
    /v1/files, GET /v1/files/{id}/content, POST and GET /v1/batches, GET /v1/batches/{id}, POST
    /v1/batches/{id}/cancel. Each line of a batch is answered by the same `responder` as a live
    request (recorded in `srv.requests` with the line's url as path); `batches` (a FakeBatch, a list
    of them used in order with the last repeating, or a callable batch index -> FakeBatch) scripts
    each batch's statuses; `batch_latency` keeps a batch from finishing before that many seconds.
    `srv.batch_creates` counts POST /v1/batches. `cached_tokens` (a callable FakeRequest -> int)
    reports that many prompt tokens as cached in every reply's usage.
    """

    def __init__(
        self,
        responder=None,
        latency: float = 0.0,
        in_process: bool = True,
        model: str = "fake-model",
        batch_api: bool = True,
        batches=None,
        batch_latency: float = 0.0,
        cached_tokens=None,
    ):
        import threading

        self.responder = responder if responder is not None else (lambda req: "OK")
        self.latency = latency
        self.batch_api = batch_api
        self.batch_script = batches if batches is not None else FakeBatch()
        self.batch_latency = batch_latency
        self.cached_tokens = cached_tokens
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batch_creates = 0
        self.abandoned = 0  # trickling replies whose client closed the connection before the end
        self.in_process = in_process
        self.model = model
        self.requests: list[FakeRequest] = []
        self._lock = threading.Lock()
        self._script_pos = 0
        self._thread = None
        self._proc = None
        self._loop = None
        self._stop = None
        self.port = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, path_suffix: str = "") -> int:
        return sum(1 for r in self.requests if r.path.endswith(path_suffix))

    def add_other_batches(self, n: int) -> None:
        """n finished batches of someone else (another tool on the same account), newer than any
        made so far: what a rerun must page through to find its own in the batch list."""
        import time

        with self._lock:
            for _ in range(n):
                self.batch_creates += 1
                bid = f"batch_{self.batch_creates:05d}"
                self.batches[bid] = {
                    "id": bid,
                    "object": "batch",
                    "endpoint": "/v1/chat/completions",
                    "errors": None,
                    "input_file_id": "file-other",
                    "completion_window": "24h",
                    "status": "completed",
                    "created_at": int(time.time()),
                    "metadata": {"owner": "someone else"},
                }

    def _next_reply(self, req: FakeRequest):
        if callable(self.responder):
            return self.responder(req)
        with self._lock:
            i = min(self._script_pos, len(self.responder) - 1)
            self._script_pos += 1
        return self.responder[i]

    def _app(self):
        import asyncio
        import json
        import time

        from aiohttp import web

        def error(status: int, message: str, headers: dict | None = None, code=None):
            body = {
                "error": {
                    "message": message,
                    "type": "scripted",
                    "code": code if code is not None else status,
                }
            }
            return web.json_response(body, status=status, headers=headers)

        async def models(request):
            return web.json_response(
                {
                    "object": "list",
                    "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}],
                }
            )

        async def health(request):
            return web.json_response({"status": "ok"})

        def answer(path: str, body: dict, reply) -> tuple[int, dict, dict]:
            """(status, JSON body, headers) of a scripted reply to a request on `path`."""
            req = FakeRequest(path, body, {})
            if not isinstance(reply, FakeResponse):
                reply = FakeResponse(reply)
            if reply.status != 200:
                code = reply.code if reply.code is not None else reply.status
                err = {"error": {"message": reply.error, "type": "scripted", "code": code}}
                return reply.status, err, reply.headers
            if reply.body is not None:
                return 200, reply.body, reply.headers
            texts = reply.text if isinstance(reply.text, list) else [reply.text or ""] * req.n
            ptoks = max(1, len(req.prompt) // 4)
            ctoks = sum(max(1, len(t) // 4) for t in texts)
            usage = {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks}
            cached = reply.cached_tokens or (self.cached_tokens(req) if self.cached_tokens else 0)
            if cached:
                usage["prompt_tokens_details"] = {"cached_tokens": min(int(cached), ptoks)}
            common = {
                "id": "fake-1",
                "created": int(time.time()),
                "model": body.get("model", self.model),
                "usage": usage,
            }
            finish = reply.finish_reason
            if path.endswith("/chat/completions"):
                choices = []
                for i, t in enumerate(texts):
                    message = {"role": "assistant", "content": None if reply.null_content else t}
                    if reply.reasoning_content is not None:
                        message["reasoning_content"] = reply.reasoning_content
                    choices.append({"index": i, "message": message, "finish_reason": finish})
                return 200, {**common, "object": "chat.completion", "choices": choices}, reply.headers
            choices = [
                {"index": i, "text": t, "finish_reason": finish, "logprobs": None}
                for i, t in enumerate(texts)
            ]
            return 200, {**common, "object": "text_completion", "choices": choices}, reply.headers

        def scripted(req: FakeRequest):
            try:
                return self._next_reply(req)
            except Exception as e:  # a broken script is a 500 the test will see
                return FakeResponse(status=500, error=f"responder raised {type(e).__name__}: {e}")

        async def post(request):
            raw = await request.read()
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            req = FakeRequest(request.path, body, {k.lower(): v for k, v in request.headers.items()})
            if self.in_process:
                with self._lock:
                    self.requests.append(req)
            if self.latency:
                await asyncio.sleep(self.latency)
            reply = scripted(req)
            if isinstance(reply, FakeResponse) and reply.delay:
                await asyncio.sleep(reply.delay)
            if isinstance(reply, FakeResponse) and reply.echo_auth:
                import copy

                reply = copy.copy(reply)
                reply.error = f"{reply.error}; you sent Authorization: {req.headers.get('authorization')}"
            status, out, headers = answer(request.path, body, reply)
            if isinstance(reply, FakeResponse) and reply.trickle:
                data = json.dumps(out).encode()
                resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
                resp.content_length = len(data)
                await resp.prepare(request)
                try:
                    for i in range(len(data)):
                        await resp.write(data[i : i + 1])
                        await asyncio.sleep(reply.trickle)
                except (ConnectionError, asyncio.CancelledError):
                    self.abandoned += 1  # the client gave up and closed the connection
                    raise
                await resp.write_eof()
                return resp
            return web.json_response(out, status=status, headers=headers)

        # -- Batch API ------------------------------------------------------------------------
        def record(path: str, headers) -> None:
            if self.in_process:
                with self._lock:
                    self.requests.append(FakeRequest(path, {}, {k.lower(): v for k, v in headers.items()}))

        def new_file(data: bytes, filename: str, purpose: str) -> dict:
            fid = f"file-{len(self.files) + 1:05d}"
            meta = {
                "id": fid,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            }
            self.files[fid] = {"meta": meta, "data": data}
            return meta

        def batch_route(handler):
            """A Batch API endpoint: 404 while the server plays one without it; recorded."""

            async def route(request):
                if not self.batch_api:
                    return await not_found(request)
                record(request.path, request.headers)
                return await handler(request)

            return route

        @batch_route
        async def upload(request):
            form = await request.post()
            part = form.get("file")
            if part is None or not hasattr(part, "file"):
                return error(400, "no file in the upload")
            return web.json_response(
                new_file(part.file.read(), part.filename or "upload", form.get("purpose", ""))
            )

        @batch_route
        async def file_content(request):
            f = self.files.get(request.match_info["fid"])
            if f is None:
                return error(404, f"no file {request.match_info['fid']}")
            return web.Response(body=f["data"], content_type="application/octet-stream")

        def batch_view(b: dict) -> dict:
            return {k: v for k, v in b.items() if not k.startswith("_")}

        def finish(b: dict, status: str) -> None:
            """Answer the batch's lines as its final status says; write its output and error files."""
            script = b["_script"]
            lines = [json.loads(x) for x in self.files[b["input_file_id"]]["data"].decode().splitlines() if x]
            if status == "failed":
                b["errors"] = {
                    "object": "list",
                    "data": script.errors
                    or [{"code": "invalid_request", "message": "scripted failure", "line": 1}],
                }
                b["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
                return
            n = len(lines) if status == "completed" else min(script.answered, len(lines))
            out, err = [], []
            for i, line in enumerate(lines):
                cid = line.get("custom_id")
                if script.tamper_ids:
                    cid = f"0000000000000000-{i}"
                rid = f"batch_req_{b['id']}_{i}"
                if i >= n:
                    code = "batch_expired" if status == "expired" else "batch_cancelled"
                    msg = "This request could not be executed before the completion window expired."
                    err.append(
                        {
                            "id": rid,
                            "custom_id": cid,
                            "response": None,
                            "error": {"code": code, "message": msg},
                        }
                    )
                    continue
                req = FakeRequest(line.get("url", ""), line.get("body") or {}, {"x-batch-id": b["id"]})
                if self.in_process:
                    with self._lock:
                        self.requests.append(req)
                st, body, _ = answer(req.path, req.body, scripted(req))
                row = {
                    "id": rid,
                    "custom_id": cid,
                    "response": {"status_code": st, "request_id": rid, "body": body},
                    "error": None,
                }
                (out if st == 200 else err).append(row)
                if st == 200 and script.duplicate_errors:
                    body = {"error": {"message": "server error", "type": "server_error", "code": None}}
                    err.append(
                        {
                            "id": rid + "_retry",
                            "custom_id": cid,
                            "response": {"status_code": 500, "request_id": rid, "body": body},
                            "error": None,
                        }
                    )
            as_bytes = lambda rows: b"".join(json.dumps(r).encode() + b"\n" for r in rows)  # noqa: E731
            if out:
                b["output_file_id"] = new_file(as_bytes(out), f"{b['id']}_output.jsonl", "batch_output")["id"]
            if err:
                b["error_file_id"] = new_file(as_bytes(err), f"{b['id']}_error.jsonl", "batch_output")["id"]
            b["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
            if script.files_gone:
                for key in ("output_file_id", "error_file_id"):
                    self.files.pop(b.get(key), None)

        def script_for(index: int) -> FakeBatch:
            s = self.batch_script
            if callable(s) and not isinstance(s, FakeBatch):
                return s(index)
            if isinstance(s, (list, tuple)):
                return s[min(index, len(s) - 1)]
            return s

        @batch_route
        async def create_batch(request):
            body = json.loads(await request.read() or b"{}")
            fid = body.get("input_file_id")
            if fid not in self.files:
                return error(400, f"no input file {fid}")
            with self._lock:
                index = self.batch_creates
                self.batch_creates += 1
            bid = f"batch_{index + 1:05d}"
            script = script_for(index)
            b = {
                "id": bid,
                "object": "batch",
                "endpoint": body.get("endpoint"),
                "errors": None,
                "input_file_id": fid,
                "completion_window": body.get("completion_window", "24h"),
                "status": script.statuses[0],
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
                "_script": script,
                "_step": 0,
                "_t0": time.monotonic(),
            }
            self.batches[bid] = b
            if b["status"] in TERMINAL_BATCH_STATUSES:
                finish(b, b["status"])
            return web.json_response(batch_view(b))

        @batch_route
        async def get_batch(request):
            b = self.batches.get(request.match_info["bid"])
            if b is None:
                return error(404, f"no batch {request.match_info['bid']}")
            statuses = b["_script"].statuses
            if b["status"] not in TERMINAL_BATCH_STATUSES and b["status"] != "cancelling":
                nxt = statuses[min(b["_step"] + 1, len(statuses) - 1)]
                early = time.monotonic() - b["_t0"] < self.batch_latency
                if not (nxt in TERMINAL_BATCH_STATUSES and early):
                    b["_step"] += 1
                    b["status"] = nxt
                    if nxt in TERMINAL_BATCH_STATUSES:
                        finish(b, nxt)
            elif b["status"] == "cancelling":
                b["status"] = "cancelled"
                finish(b, "cancelled")
            return web.json_response(batch_view(b))

        @batch_route
        async def cancel_batch(request):
            b = self.batches.get(request.match_info["bid"])
            if b is None:
                return error(404, f"no batch {request.match_info['bid']}")
            if b["status"] not in TERMINAL_BATCH_STATUSES:
                b["status"] = "cancelling"
            return web.json_response(batch_view(b))

        @batch_route
        async def list_batches(request):
            """Newest first, `limit` per page (default 20, at most 100), `after` a batch id."""
            data = [batch_view(b) for b in reversed(list(self.batches.values()))]
            after = request.query.get("after")
            if after:
                ids = [b["id"] for b in data]
                data = data[ids.index(after) + 1 :] if after in ids else []
            limit = max(1, min(100, int(request.query.get("limit", 20))))
            page, more = data[:limit], len(data) > limit
            return web.json_response(
                {
                    "object": "list",
                    "data": page,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                    "has_more": more,
                }
            )

        @batch_route
        async def delete_file(request):
            fid = request.match_info["fid"]
            if self.files.pop(fid, None) is None:
                return error(404, f"no file {fid}")
            return web.json_response({"id": fid, "object": "file", "deleted": True})

        async def not_found(request):
            return error(404, f"no route {request.path}")

        app = web.Application(client_max_size=256 * 2**20)  # a batch file may be up to 200 MB
        app.router.add_get("/v1/models", models)
        app.router.add_get("/health", health)
        app.router.add_post("/v1/chat/completions", post)
        app.router.add_post("/v1/completions", post)
        app.router.add_post("/v1/files", upload)
        app.router.add_get("/v1/files/{fid}/content", file_content)
        app.router.add_delete("/v1/files/{fid}", delete_file)
        app.router.add_post("/v1/batches", create_batch)
        app.router.add_get("/v1/batches", list_batches)
        app.router.add_get("/v1/batches/{bid}", get_batch)
        app.router.add_post("/v1/batches/{bid}/cancel", cancel_batch)
        app.router.add_route("*", "/{tail:.*}", not_found)
        return app

    def _serve(self, sock, ready=None):
        import asyncio

        from aiohttp import web

        async def main():
            runner = web.AppRunner(self._app(), access_log=None)
            await runner.setup()
            site = web.SockSite(runner, sock)
            await site.start()
            self._stop = asyncio.Event()
            if ready is not None:
                ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(main())
        self._loop.close()

    def start(self):
        import socket
        import threading

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        if self.in_process:
            ready = threading.Event()
            self._thread = threading.Thread(target=self._serve, args=(sock, ready), daemon=True)
            self._thread.start()
            ready.wait(10)
        else:
            import multiprocessing

            self._proc = multiprocessing.get_context("fork").Process(
                target=self._serve, args=(sock,), daemon=True
            )
            self._proc.start()
            sock.close()
        return self

    def stop(self):
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(5)
        elif self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
