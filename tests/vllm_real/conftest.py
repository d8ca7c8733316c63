"""One real vLLM OpenAI server (the CPU build, .venv-vllm) on the embedded default model for the
whole tier: started once, waited for, its log's tail added to every failing test's report, and
stopped at the end whatever happens (huatuo_o1.testing.vllm_server).

The tier runs only from scripts/test_vllm.sh, which sets HUATUO_VLLM_PYTHON; elsewhere (the main
suite) every test here is skipped before anything starts.
"""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest

from huatuo_o1.testing.vllm_server import SERVED_NAME, VLLMServer

_SERVER: list[VLLMServer] = []


def pytest_collection_modifyitems(config, items):
    if os.environ.get("HUATUO_VLLM_PYTHON"):
        return
    skip = pytest.mark.skip(reason="the vLLM tier: bash scripts/test_vllm.sh")
    for item in items:
        if "vllm_real" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vllm(tmp_path_factory, default_model_dir):
    """The running server: `.url` (base URL), `.served_name`, `.python` (the vLLM environment).
    HUATUO_VLLM_URL names one already serving the embedded model as "smol" (used as it is)."""
    if os.environ.get("HUATUO_VLLM_URL"):
        yield SimpleNamespace(url=os.environ["HUATUO_VLLM_URL"], served_name=SERVED_NAME)
        return
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    server = VLLMServer(log, python=os.environ["HUATUO_VLLM_PYTHON"], model=default_model_dir)
    _SERVER.append(server)
    # a CI timeout's SIGTERM: end the run as Ctrl-C does, so the server is stopped on the way out
    previous = signal.signal(signal.SIGTERM, _interrupt)
    with server:
        print(f"\nvLLM ready after {server.ready_after_s:.0f} s")
        yield server
    signal.signal(signal.SIGTERM, previous)
    _SERVER.clear()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVER:
        report.sections.append(("vLLM server log (last lines)", _SERVER[0].log_tail(60)))
