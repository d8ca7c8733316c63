"""The paper's evaluation file: blob-id check, atomic install, offline message."""

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from huatuo_o1.eval.data import PAPER_EVAL_BLOB, PAPER_EVAL_URL, file_blob_id, git_blob_id, install, main
from huatuo_o1.io import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_git_blob_id_is_gits():
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_the_sample_is_not_the_paper_file_and_has_an_unmistakable_name():
    sample = ROOT / "evaluation/data/eval_sample.json"
    assert sample.is_file() and file_blob_id(sample) != PAPER_EVAL_BLOB
    assert not (ROOT / "evaluation/data/eval_data.json").exists() or (
        file_blob_id(ROOT / "evaluation/data/eval_data.json") == PAPER_EVAL_BLOB
    )


def test_the_paper_file_is_where_the_published_commands_look():
    # the original's README evaluates `--eval_file evaluation/data/eval_data.json`; the download, the
    # default destination and both decontamination defaults name that one path
    from huatuo_o1.contract import PAPER_EVAL_FILE, PAPER_EVAL_RELPATH
    from huatuo_o1.datagen import construct, decontam

    assert PAPER_EVAL_RELPATH == "evaluation/data/eval_data.json"
    assert f"--eval_file {PAPER_EVAL_RELPATH}" in (ROOT / "README.md").read_text()
    assert PAPER_EVAL_URL.endswith("/HuatuoGPT-o1/main/" + PAPER_EVAL_RELPATH)
    assert (
        PAPER_EVAL_FILE
        == ROOT / PAPER_EVAL_RELPATH
        == construct.DEFAULT_EVAL_FILE
        == decontam.DEFAULT_AGAINST
    )


def _run(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "evaluation/get_eval_data.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_file_that_does_not_match_is_refused_and_nothing_is_written(tmp_path):
    bad = tmp_path / "eval_data.json"
    bad.write_text(json.dumps({"MedQA": []}))
    dest = tmp_path / "out" / "eval_data.json"
    proc = _run("--from_file", str(bad), "--output", str(dest))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "is not the paper's evaluation file" in lines[0] and PAPER_EVAL_BLOB in lines[0]
    )
    assert not (tmp_path / "out").exists()  # not even its folder


def test_offline_names_the_url_to_download(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/eval_data.json"
    dest = tmp_path / "eval_data.json"
    proc = _run("--url", url, "--output", str(dest), "--timeout", "5")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot download " + url) and "--from_file" in lines[-1]
    assert not dest.exists()
    assert "raw.githubusercontent.com/FreedomIntelligence/HuatuoGPT-o1/main/evaluation/data" in PAPER_EVAL_URL


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


def test_download_checked_then_written_atomically(tmp_path):
    data = json.dumps({"MedQA_USLME_test": [{"question": "q", "options": {"A": "x"}, "answer_idx": "A"}]})
    _Handler.body = data.encode()
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/eval_data.json"
        dest = tmp_path / "data" / "eval_data.json"
        blob = git_blob_id(data.encode())
        assert main(["--url", url, "--output", str(dest)], expected=blob) == 0
        assert dest.read_bytes() == data.encode() and file_blob_id(dest) == blob
        assert [p.name for p in dest.parent.iterdir()] == ["eval_data.json"]  # no temp file left
        # already there: nothing downloaded again
        assert main(["--url", "http://127.0.0.1:1/nothing", "--output", str(dest)], expected=blob) == 0
        # a mismatch never replaces the good file
        with pytest.raises(InputError, match="not the paper's evaluation file"):
            main(["--url", url, "--output", str(dest)], expected="0" * 40)
        assert dest.read_bytes() == data.encode()
    finally:
        srv.shutdown()


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    import os

    dest = tmp_path / "eval_data.json"
    dest.write_bytes(b"old")
    data = b"new contents"

    def boom(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        install(data, dest, "test", expected=git_blob_id(data))
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["eval_data.json"]
