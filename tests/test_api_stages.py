"""The API stages' refusals and recoveries, through the real scripts against the loopback server:
stale results of edited items, lone surrogates, NaN, unreadable inputs, unwritable outputs, bad
flag values, exit codes, unreachable endpoints and credentials inside URLs."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from huatuo_o1.llm import FatalAPIError, LLMClient, TransientAPIError
from huatuo_o1.redact import mask_secrets, mask_url
from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse
from tests.helpers import REPO

CONSTRUCT = "construct_verifiable_medical_problems.py"
SEARCH = "search_for_complex_reasoning_path.py"
OPEN_Q, GT = "Open-ended Verifiable Question", "Ground-True Answer"
KEY = "sk-hardening-test-key-0123456789"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def run(script: str, *args, preexec=None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": ""}
    return subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, and the last stderr line is the `error: ...` line holding `needles`."""
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), p.stderr
    for n in needles:
        assert n in line, (n, line)
    return line


def mcq_items(n: int) -> list[dict]:
    return [
        {
            "question": f"Question number {i}: a patient with finding F{i}. What is the diagnosis?",
            "options": {"A": f"Disease A{i}", "B": f"Disease B{i}"},
            "answer_idx": "B",
            "answer": f"Disease B{i}",
        }
        for i in range(1, n + 1)
    ]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def is_filter(prompt: str) -> bool:
    return "four verdicts" in prompt


def construct_responder(req):
    if is_filter(req.prompt):
        return "Pass"
    n = int(req.prompt.split("Question number ")[1].split(":")[0])
    return json.dumps({OPEN_Q: f"Open question {n}?", GT: f"Disease B{n}"})


def construct_args(data: Path, out: Path, url: str, *extra) -> list:
    return [
        "--data_path", data, "--model_name", "gpt-4o", "--api_key", KEY, "--api_url", url,
        "--output_dir", out, "--retry_backoff", "0.01", "--num_process", "2", *extra,
    ]  # fmt: skip


def search_data(path: Path, n: int) -> Path:
    rows = [
        {OPEN_Q: f"Case {i}: which diagnosis?", GT: sm.scripted_answer(f"Case {i}: which diagnosis?", 0)}
        for i in range(1, n + 1)
    ]
    return write_json(path, rows)


def search_args(data: Path, out: Path, url: str, *extra) -> list:
    return [
        "--data_path", data, "--model_name", "gpt-4o", "--api_key", KEY, "--api_url", url,
        "--output_dir", out, "--retry_backoff", "0.01", "--seed", "1", *extra,
    ]  # fmt: skip


def merged(out: Path) -> tuple[list[dict], dict]:
    [path] = [p for p in out.glob("*_final_*.json") if not p.stem.endswith("_summary")]
    return json.loads(path.read_text(encoding="utf-8")), json.loads(
        path.with_name(path.stem + "_summary.json").read_text(encoding="utf-8")
    )


def strict_json(path: Path):
    """Parse as standard JSON: NaN/Infinity are refused, and the bytes must be UTF-8."""

    def no_constant(name):
        raise AssertionError(f"non-standard JSON constant {name} in {path}")

    return json.loads(path.read_bytes().decode("utf-8"), parse_constant=no_constant)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# 2. stale results of edited items
# ---------------------------------------------------------------------------------------------


def test_construct_edited_item_not_redone_is_unfinished_and_exits_1(tmp_path):
    data, out = write_json(tmp_path / "mcq.json", mcq_items(3)), tmp_path / "out"
    with FakeOpenAIServer(construct_responder) as srv:
        assert run(CONSTRUCT, *construct_args(data, out, srv.url, "--filter_data")).returncode == 0
    items = mcq_items(3)
    items[1]["question"] = "Question number 2: EDITED, a patient with finding G. What is the diagnosis?"
    items[1]["answer"] = "Disease B2"
    write_json(data, items)

    # --max_cost reached: the edited item's filter prompt alone would pass it, so nothing is sent
    with FakeOpenAIServer(construct_responder) as srv:
        p = run(
            CONSTRUCT,
            *construct_args(
                data, out, srv.url, "--filter_data", "--price", "1000,1000", "--max_cost", "0.000001"
            ),
        )
        assert srv.count() == 0
    # the edited question is another item (items are keyed by content): unfinished, as any item the
    # budget stopped before (exit 3: stopped with work left); its old result is never merged
    assert p.returncode == 3, p.stdout + p.stderr
    recs, summary = merged(out)
    assert [r["process_id"] for r in recs] == [1, 3]  # the old result of item 2 is not merged
    assert summary["unfinished"] == 1

    # the endpoint failing: the item was tried and failed, exit 1
    with FakeOpenAIServer(lambda req: FakeResponse(status=500)) as srv:
        p = run(CONSTRUCT, *construct_args(data, out, srv.url, "--filter_data", "--max_retries", "0"))
    assert p.returncode == 1
    recs, summary = merged(out)
    assert [r["process_id"] for r in recs] == [1, 3] and summary["unfinished"] == 1

    # redone once the endpoint answers: merged with the new question, exit 0
    with FakeOpenAIServer(construct_responder) as srv:
        p = run(CONSTRUCT, *construct_args(data, out, srv.url, "--filter_data"))
        assert srv.count() == 2  # only the edited item: filter + rewrite
    assert p.returncode == 0, p.stdout + p.stderr
    recs, summary = merged(out)
    assert [r["process_id"] for r in recs] == [1, 2, 3] and "EDITED" in recs[1]["question"]
    assert summary["unfinished"] == 0


def test_search_edited_item_not_redone_is_left_out_of_the_merge(tmp_path):
    data, out = search_data(tmp_path / "data.json", 2), tmp_path / "out"
    with FakeOpenAIServer(sm.responder) as srv:
        assert run(SEARCH, *search_args(data, out, srv.url)).returncode == 0
    rows = json.loads(data.read_text())
    rows[0][OPEN_Q] = "Case 1: which diagnosis now, EDITED?"
    write_json(data, rows)
    with FakeOpenAIServer(lambda req: FakeResponse(status=503)) as srv:
        p = run(SEARCH, *search_args(data, out, srv.url, "--max_retries", "0"))
    assert p.returncode == 1
    recs, summary = merged(out)
    assert [r["Question"] for r in recs] == ["Case 2: which diagnosis?"]
    assert summary["unfinished"] == 1


# ---------------------------------------------------------------------------------------------
# 5. lone surrogates; 12. NaN
# ---------------------------------------------------------------------------------------------


def test_construct_lone_surrogates_in_replies_and_input_are_replaced(tmp_path):
    items = mcq_items(2)
    items[0]["question"] = "Question number 1: pain \ud83d in the chest. What is the diagnosis?"
    data = tmp_path / "mcq.json"
    data.write_text(json.dumps(items), encoding="utf-8")  # ascii escapes: "\ud83d" as JSON text

    def responder(req):
        if is_filter(req.prompt):
            return "Pass \udc00"  # a raw lone surrogate in the reply text
        n = int(req.prompt.split("Question number ")[1].split(":")[0])
        return json.dumps({OPEN_Q: f"Open question {n} \ud83d?", GT: f"Disease B{n}"})  # escaped

    out = tmp_path / "out"
    with FakeOpenAIServer(responder) as srv:
        p = run(CONSTRUCT, *construct_args(data, out, srv.url, "--filter_data"))
        assert all("\ud83d" not in r.prompt for r in srv.requests)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    recs = strict_json(next(p for p in out.glob("*_final_2.json")))
    assert [r["status"] for r in recs] == ["kept", "kept"]
    assert recs[0]["question"].startswith("Question number 1: pain \ufffd")
    assert recs[0][OPEN_Q] == "Open question 1 \ufffd?"
    assert recs[0]["filter_reply"] == "Pass \ufffd"


def test_search_lone_surrogate_in_the_input_question(tmp_path):
    q = "Case 1: which diagnosis \ud83d?"
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{OPEN_Q: q, GT: sm.scripted_answer(q.replace("\ud83d", "\ufffd"), 0)}]))
    out = tmp_path / "out"
    with FakeOpenAIServer(sm.responder) as srv:
        p = run(SEARCH, *search_args(data, out, srv.url))
    assert p.returncode == 0, p.stdout + p.stderr
    [rec] = strict_json(next(out.glob("data_CoT_search_final_1.json")))
    assert rec["Question"] == "Case 1: which diagnosis \ufffd?"


def test_nan_in_input_becomes_null_and_is_never_written(tmp_path):
    items = mcq_items(2)
    items[0]["answer_idx"] = float("nan")
    items[1]["score"] = float("inf")
    data = tmp_path / "mcq.json"
    data.write_text(json.dumps(items))  # Python writes NaN / Infinity
    assert "NaN" in data.read_text()
    out = tmp_path / "out"
    with FakeOpenAIServer(construct_responder) as srv:
        p = run(CONSTRUCT, *construct_args(data, out, srv.url))
    assert p.returncode == 0, p.stdout + p.stderr
    recs = strict_json(next(out.glob("mcq_verifiable_final_2.json")))
    assert recs[0]["answer_idx"] is None and recs[1]["score"] is None
    for f in (out / "mcq_verifiable").glob("*.json"):
        strict_json(f)


def test_atomic_writer_cleans_what_utf8_and_json_cannot_hold(tmp_path):
    from huatuo_o1.io import atomic_write_json, atomic_write_jsonl

    atomic_write_json(tmp_path / "a.json", {"t": "x\ud83d", "p": "\ud83d\ude00", "n": float("nan")})
    assert strict_json(tmp_path / "a.json") == {"t": "x\ufffd", "p": "\U0001f600", "n": None}
    atomic_write_jsonl(tmp_path / "b.jsonl", [{"t": "\udfff"}, {"v": float("-inf")}])
    lines = (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [{"t": "\ufffd"}, {"v": None}]


# ---------------------------------------------------------------------------------------------
# 9. unreadable inputs, unwritable outputs
# ---------------------------------------------------------------------------------------------


def bad_input(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / "in.json"
    if kind == "latin1":
        p.write_bytes(json.dumps(mcq_items(1)).replace("patient", "pati\u00e9nt").encode("latin-1"))
    elif kind == "folder":
        p.mkdir()
    elif kind == "deep":
        p.write_text("[" * 100000 + "]" * 100000)
    elif kind == "deep_item":
        item = mcq_items(1)[0]
        nest = "x"
        for _ in range(150):
            nest = [nest]
        item["extra"] = nest
        p.write_text(json.dumps([item]))
    return p


@pytest.mark.parametrize("script", [CONSTRUCT, SEARCH])
@pytest.mark.parametrize(
    "kind,needle",
    [
        ("latin1", "not UTF-8"),
        ("folder", "is a folder"),
        ("deep", "nested deeper"),
        ("deep_item", "nested deeper"),
    ],
)
def test_unreadable_input_is_one_line(tmp_path, script, kind, needle):
    data = bad_input(tmp_path, kind)
    p = run(script, "--data_path", data, "--api_url", "http://127.0.0.1:9/v1", "--output_dir", tmp_path / "o")
    assert_one_line_error(p, needle)
    assert not (tmp_path / "o").exists()


def test_load_records_lone_surrogate_key_and_bom(tmp_path):
    from huatuo_o1.io import load_records

    p = tmp_path / "x.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"k\ud800": "v"}]).encode())
    assert load_records(p) == [{"k\ufffd": "v"}]


def _blocked_output(tmp_path: Path, kind: str) -> list:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    return {
        "output_dir_is_file": ["--output_dir", blocker],
        "output_dir_under_file": ["--output_dir", blocker / "out"],
        "output_path_under_file": ["--output_dir", tmp_path / "out", "--output_path", blocker / "m.json"],
        "output_path_is_folder": ["--output_dir", tmp_path / "out", "--output_path", tmp_path],
        "export_under_file": [
            "--output_dir",
            tmp_path / "out",
            "--export_verifier_data",
            blocker / "v.jsonl",
        ],
    }[kind]


@pytest.mark.parametrize(
    "script,kind",
    [
        (CONSTRUCT, "output_dir_is_file"),
        (CONSTRUCT, "output_dir_under_file"),
        (CONSTRUCT, "output_path_under_file"),
        (SEARCH, "output_path_is_folder"),
        (SEARCH, "export_under_file"),
        (SEARCH, "output_dir_under_file"),
    ],
)
def test_unwritable_output_is_refused_before_the_first_request(tmp_path, script, kind):
    data = (
        write_json(tmp_path / "mcq.json", mcq_items(2))
        if script == CONSTRUCT
        else search_data(tmp_path / "d.json", 2)
    )
    responder = construct_responder if script == CONSTRUCT else sm.responder
    with FakeOpenAIServer(responder) as srv:
        p = run(
            script,
            "--data_path",
            data,
            "--api_url",
            srv.url,
            "--model_name",
            "gpt-4o",
            *_blocked_output(tmp_path, kind),
        )
        assert srv.count() == 0  # nothing paid
    assert_one_line_error(p)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    data = write_json(tmp_path / "mcq.json", mcq_items(1))
    with FakeOpenAIServer(construct_responder) as srv:
        p = run(CONSTRUCT, *construct_args(data, ro, srv.url))
        assert srv.count() == 0
    assert_one_line_error(p, "cannot be written")


def _file_size_limit(nbytes: int):
    def pre():  # in the child: writes past nbytes fail with EFBIG, like a full disk (ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return pre


def test_full_disk_while_merging_is_one_line_and_resumes(tmp_path):
    data, out = write_json(tmp_path / "mcq.json", mcq_items(8)), tmp_path / "out"
    with FakeOpenAIServer(construct_responder) as srv:
        p = run(CONSTRUCT, *construct_args(data, out, srv.url), preexec=_file_size_limit(3000))
        assert srv.count() == 8
    line = assert_one_line_error(p, "cannot write")
    assert "mcq_verifiable_final_8.json" in line
    assert len(list((out / "mcq_verifiable").glob("*.json"))) == 8  # every item result kept
    assert not list(out.glob("*_final_*.json")) and not list(out.glob(".*.tmp"))
    with FakeOpenAIServer(construct_responder) as srv:
        p = run(CONSTRUCT, *construct_args(data, out, srv.url))
        assert srv.count() == 0  # resumed: nothing redone
    assert p.returncode == 0
    assert len(merged(out)[0]) == 8


def test_full_disk_while_saving_an_item_is_one_line(tmp_path):
    data, out = write_json(tmp_path / "mcq.json", mcq_items(3)), tmp_path / "out"
    big = "x" * 4000
    with FakeOpenAIServer(lambda req: json.dumps({OPEN_Q: "Q " + big + "?", GT: "A"})) as srv:
        p = run(CONSTRUCT, *construct_args(data, out, srv.url), preexec=_file_size_limit(2000))
    assert_one_line_error(p, "cannot write the result of item")
    assert not list((out / "mcq_verifiable").glob("*.json"))


# ---------------------------------------------------------------------------------------------
# 10. flag values that cannot work; 11. exit codes and unreachable endpoints
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script,flags,needle",
    [
        (CONSTRUCT, ["--limit_num", "0"], "--limit_num"),
        (CONSTRUCT, ["--limit_num", "-2"], "--limit_num"),
        (CONSTRUCT, ["--max_retries", "-1"], "--max_retries"),
        (SEARCH, ["--limit_num", "0"], "--limit_num"),
        (SEARCH, ["--max_retries", "-1"], "--max_retries"),
        (SEARCH, ["--max_consecutive_failures", "0"], "--max_consecutive_failures"),
        (CONSTRUCT, ["--api_url", "not a url"], "not an http(s) URL"),
        (SEARCH, ["--verifier_api_url", "ftp://x"], "--verifier_api_url"),
    ],
)
def test_bad_flag_values_rejected_before_any_request(tmp_path, script, flags, needle):
    data = (
        write_json(tmp_path / "mcq.json", mcq_items(2))
        if script == CONSTRUCT
        else search_data(tmp_path / "d.json", 2)
    )
    with FakeOpenAIServer(construct_responder) as srv:
        p = run(script, "--data_path", data, "--api_url", srv.url, "--output_dir", tmp_path / "o", *flags)
        assert srv.count() == 0
    assert_one_line_error(p, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("script", [CONSTRUCT, SEARCH])
def test_every_item_failing_on_unparseable_replies_exits_1(tmp_path, script):
    data = (
        write_json(tmp_path / "mcq.json", mcq_items(2))
        if script == CONSTRUCT
        else search_data(tmp_path / "d.json", 2)
    )
    out = tmp_path / "out"
    with FakeOpenAIServer(lambda req: "I cannot answer that.") as srv:
        p = run(script, "--data_path", data, "--api_url", srv.url, "--output_dir", out, "--max_tries", "1")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "every finished item (2) failed" in p.stdout
    # a rerun that finds only failed items says so again
    with FakeOpenAIServer(lambda req: "still nothing") as srv:
        p = run(script, "--data_path", data, "--api_url", srv.url, "--output_dir", out, "--max_tries", "1")
        assert srv.count() == 0
    assert p.returncode == 1


@pytest.mark.parametrize("script", [CONSTRUCT, SEARCH])
def test_refused_connection_fails_at_once_in_one_line(tmp_path, script):
    data = (
        write_json(tmp_path / "mcq.json", mcq_items(3))
        if script == CONSTRUCT
        else search_data(tmp_path / "d.json", 3)
    )
    # with 6 retries of 30 s backoff, retrying would outlast the subprocess timeout
    p = run(
        script, "--data_path", data, "--api_url", f"http://127.0.0.1:{closed_port()}/v1", "--output_dir",
        tmp_path / "o", "--max_retries", "6", "--retry_backoff", "30", timeout=90,
    )  # fmt: skip
    assert_one_line_error(p, "cannot connect to http://127.0.0.1:")


def test_endpoint_that_answered_then_dropped_is_still_retried():
    async def go():
        with FakeOpenAIServer(lambda req: "hello") as srv:
            url = srv.url
            client = LLMClient("gpt-4o", api_url=url, max_retries=2, backoff_base=0.01)
            assert await client.chat("hi") == "hello"
        # the server is gone now: a dropped endpoint is transient (retried), not a wrong URL
        with pytest.raises(TransientAPIError, match="kept failing after 3 tries"):
            await client.chat("hi again")
        assert client.usage.retries == 2
        await client.close()
        fresh = LLMClient("gpt-4o", api_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=5)
        with pytest.raises(FatalAPIError, match="cannot connect"):
            await fresh.chat("hi")
        await fresh.close()

    asyncio.run(go())


# ---------------------------------------------------------------------------------------------
# 4. credentials inside URLs
# ---------------------------------------------------------------------------------------------


def test_mask_helpers():
    assert mask_url("http://user:pa55@host:8000/v1") == "http://***@host:8000/v1"
    assert mask_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
    text = "failed at https://u:p@h/v1 with sk-abcdefghijkl and http://tok@h2/x"
    assert mask_secrets(text) == "failed at https://***@h/v1 with sk-*** and http://***@h2/x"


def test_url_credentials_never_reach_output_or_files(tmp_path):
    data, out = search_data(tmp_path / "d.json", 2), tmp_path / "out"
    with FakeOpenAIServer(lambda req: FakeResponse(status=500)) as srv:
        url = srv.url.replace("http://", "http://alice:TopSecretPw@")
        p = run(SEARCH, *search_args(data, out, url, "--max_retries", "0", "--max_consecutive_failures", "1"))
        assert srv.count() >= 1  # the URL was usable
    assert p.returncode == 3  # the endpoint looked down: stopped with work left
    seen = p.stdout + p.stderr + "".join(f.read_text() for f in out.rglob("*") if f.is_file())
    assert "***@127.0.0.1" in seen  # the failure names the endpoint, masked
    assert "TopSecretPw" not in seen and "alice" not in seen

    p = run(CONSTRUCT, *construct_args(write_json(tmp_path / "m.json", mcq_items(1)), out,
                                       f"http://alice:TopSecretPw@127.0.0.1:{closed_port()}/v1"))  # fmt: skip
    assert_one_line_error(p, "***@127.0.0.1")
    assert "TopSecretPw" not in p.stdout + p.stderr
    p = run(CONSTRUCT, *construct_args(tmp_path / "m.json", out, "http://alice:TopSecretPw@host:99999/v1"))
    assert_one_line_error(p, "not an http(s) URL")
    assert "TopSecretPw" not in p.stderr
