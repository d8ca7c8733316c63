"""A loopback HTTP server that speaks the OpenAI protocol with scripted replies: the GPT-4o double
of the tests and benchmarks (chat and completions endpoints, errors, latency, usage)."""

from __future__ import annotations


class FakeResponse:
    """A scripted reply: text for a 200 answer, or an HTTP error status with optional headers and
    OpenAI error `code` (e.g. "context_length_exceeded", "insufficient_quota"; default: the status).

    For a 200 answer, `finish_reason` (e.g. "length": cut at max_tokens) is set on every choice;
    `reasoning_content` adds a reasoning model's draft to each chat message, and `null_content`
    sends the message's `content` as null; `body` replaces the whole JSON body (e.g. a gateway's
    `{"error": {...}}` sent with status 200)."""

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
    ):
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
    """

    def __init__(
        self, responder=None, latency: float = 0.0, in_process: bool = True, model: str = "fake-model"
    ):
        import threading

        self.responder = responder if responder is not None else (lambda req: "OK")
        self.latency = latency
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
            try:
                reply = self._next_reply(req)
            except Exception as e:  # a broken script is a 500 the test will see
                reply = FakeResponse(status=500, error=f"responder raised {type(e).__name__}: {e}")
            if not isinstance(reply, FakeResponse):
                reply = FakeResponse(reply)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.status != 200:
                return error(reply.status, reply.error, reply.headers, reply.code)
            if reply.body is not None:
                return web.json_response(reply.body, headers=reply.headers)
            texts = reply.text if isinstance(reply.text, list) else [reply.text or ""] * req.n
            ptoks = max(1, len(req.prompt) // 4)
            ctoks = sum(max(1, len(t) // 4) for t in texts)
            usage = {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks}
            common = {
                "id": "fake-1",
                "created": int(time.time()),
                "model": body.get("model", self.model),
                "usage": usage,
            }
            finish = reply.finish_reason
            if request.path.endswith("/chat/completions"):
                choices = []
                for i, t in enumerate(texts):
                    message = {"role": "assistant", "content": None if reply.null_content else t}
                    if reply.reasoning_content is not None:
                        message["reasoning_content"] = reply.reasoning_content
                    choices.append({"index": i, "message": message, "finish_reason": finish})
                return web.json_response({**common, "object": "chat.completion", "choices": choices})
            choices = [
                {"index": i, "text": t, "finish_reason": finish, "logprobs": None}
                for i, t in enumerate(texts)
            ]
            return web.json_response({**common, "object": "text_completion", "choices": choices})

        async def not_found(request):
            return error(404, f"no route {request.path}")

        app = web.Application()
        app.router.add_get("/v1/models", models)
        app.router.add_get("/health", health)
        app.router.add_post("/v1/chat/completions", post)
        app.router.add_post("/v1/completions", post)
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
