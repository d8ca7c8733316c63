"""Stage 1 as the paper describes it: the free steps, the small-models difficulty filter,
the original's criteria, --paper_settings and the SFT/RL split, through the real scripts against the
loopback OpenAI-protocol server (the small models are served by the same server under other names)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import huatuo_o1.datagen.construct as construct
from huatuo_o1.datagen.question_rules import check
from huatuo_o1.parsing import parse_filter_verdict
from huatuo_o1.prompts import filter_prompt, verify_prompt
from huatuo_o1.testing.openai_server import FakeOpenAIServer, FakeResponse
from tests.helpers import run_script

SCRIPT = "construct_verifiable_medical_problems.py"
KEY = "sk-fake-stage1-paper-key-0123456789"
SMALL = ("gemma-tiny", "llama-tiny", "qwen-tiny")
EVAL_Q = (
    "A 62-year-old man has sudden painless loss of vision in his right eye; fundoscopy shows a "
    "cherry-red spot at the macula. Which of the following is the most likely diagnosis?"
)


def item(n: int, question: str | None = None, answer_idx: str | None = "B") -> dict:
    q = (
        question
        or f"Question number {n}: a patient presents with finding F{n} and sign S{n}. What is the diagnosis?"
    )
    it = {
        "question": q,
        "options": {"A": f"Disease A{n}", "B": f"Disease B{n}", "C": f"Disease C{n}"},
        "answer": f"Disease B{n}",
    }
    if answer_idx:
        it["answer_idx"] = answer_idx
    return it


def number(prompt: str) -> int:
    return int(prompt.split("Question number ")[1].split(":")[0])


class Script:
    """What each model answers: small models a letter per item, GPT-4o Pass and a rewrite."""

    def __init__(self, small_letters=None, verdicts=None, gpt_status=200):
        self.small_letters = small_letters or {}  # (model, n) -> letter; default "B" (right)
        self.verdicts = verdicts or {}  # n -> filter reply; default "Pass"
        self.gpt_status = gpt_status

    def __call__(self, req):
        model = req.body.get("model")
        n = number(req.prompt)
        if model in SMALL:
            return f"Let me think. The answer is {self.small_letters.get((model, n), 'B')}."
        if self.gpt_status != 200:
            return FakeResponse(status=self.gpt_status)
        if "four verdicts" in req.prompt:
            return self.verdicts.get(n, "Pass")
        return json.dumps(
            {"Open-ended Verifiable Question": f"Open question {n}?", "Ground-True Answer": f"B{n}"}
        )


def write(tmp_path: Path, items: list[dict], name="mcq.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(items))
    return p


def eval_file(tmp_path: Path) -> Path:
    p = tmp_path / "eval.json"
    p.write_text(
        json.dumps({"MedQA_USMLE_test": [{"question": EVAL_Q, "options": {"A": "x"}, "answer_idx": "A"}]})
    )
    return p


def argv(data, out, srv, *extra, small=True, decontam="none") -> list[str]:
    a = [
        "--data_path", str(data), "--model_name", "gpt-4o", "--api_key", KEY, "--api_url", srv.url,
        "--output_dir", str(out), "--retry_backoff", "0.01",
    ]  # fmt: skip
    if decontam is not None:
        a += ["--decontaminate_against", str(decontam)]
    if small:
        a += ["--difficulty_models", ",".join(SMALL), "--difficulty_api_url", srv.url]
    return a + list(extra)


def run_main(args):
    from construct_verifiable_medical_problems import main

    return main(args)


def merged_and_summary(out: Path) -> tuple[list[dict], dict]:
    files = [p for p in out.glob("*_final_*.json") if not p.name.endswith("_summary.json")]
    assert len(files) == 1, files
    return json.loads(files[0].read_text()), json.loads(
        files[0].with_name(files[0].stem + "_summary.json").read_text()
    )


def small_requests(srv, n: int | None = None) -> int:
    return sum(
        1 for r in srv.requests if r.body.get("model") in SMALL and (n is None or number(r.prompt) == n)
    )


def gpt_requests(srv, n: int | None = None) -> int:
    return sum(
        1 for r in srv.requests if r.body.get("model") == "gpt-4o" and (n is None or number(r.prompt) == n)
    )


def test_steps_run_in_the_papers_order_and_each_drop_keeps_its_reason(tmp_path):
    items = [
        item(1, f"Question number 1: EXCEPT which? {EVAL_Q}"),  # contaminated and negative: first step wins
        item(2, "Question number 2: short?"),
        item(3, "Question number 3: which of the following is NOT a cause of finding F3 in adults?"),
        item(4),  # every small model right: too easy
        item(5),  # one small model wrong, GPT-4o says Too Simple
        item(6),  # kept
    ]
    script = Script(small_letters={("llama-tiny", 5): "C", ("qwen-tiny", 6): "A"}, verdicts={5: "Too Simple"})
    data, out = write(tmp_path, items), tmp_path / "out"
    with FakeOpenAIServer(script) as srv:
        extra = ("--filter_data", "--min_question_length", "40")
        assert run_main(argv(data, out, srv, *extra, decontam=eval_file(tmp_path))) == 0
        for n in (1, 2, 3):
            assert small_requests(srv, n) == 0 and gpt_requests(srv, n) == 0  # dropped before any request
        assert small_requests(srv, 4) == 3 and gpt_requests(srv, 4) == 0  # GPT-4o never asked
        assert gpt_requests(srv, 5) == 1 and gpt_requests(srv, 6) == 2
    merged, summary = merged_and_summary(out)
    assert [r["process_id"] for r in merged] == [1, 2, 3, 4, 5, 6]
    steps = [r.get("drop_step") for r in merged]
    assert steps == ["decontamination", "min_length", "question_form", "difficulty", "gpt_filter", None]
    assert "MedQA_USMLE_test #1" in merged[0]["drop_reason"]
    assert "--min_question_length 40" in merged[1]["drop_reason"]
    assert "NOT" in merged[2]["drop_reason"]
    assert merged[3]["drop_reason"].startswith("all 3 small models answered correctly")
    assert merged[4]["filter_verdict"] == "Too Simple"
    assert merged[5]["status"] == "kept" and merged[5]["Open-ended Verifiable Question"] == "Open question 6?"
    for r in merged[3:]:
        assert set(r["difficulty"]) == set(SMALL)
        assert all({"correct", "extracted", "output"} <= set(v) for v in r["difficulty"].values())
    assert merged[4]["difficulty"]["llama-tiny"] == {
        "correct": False,
        "extracted": "C",
        "output": "Let me think. The answer is C.",
    }
    assert summary["dropped"] == {
        "decontamination": 1,
        "min_length": 1,
        "question_form": 1,
        "difficulty": 1,
        "gpt_filter": 1,
    }
    assert summary["kept"] == 1 and summary["filtered"] == 5
    assert summary["difficulty"]["correct_by_model"] == {"gemma-tiny": 3, "llama-tiny": 2, "qwen-tiny": 2}
    assert summary["decontamination"]["eval_questions"] == 1


def test_small_models_get_the_evaluation_prompt_greedy(tmp_path):
    from huatuo_o1.prompts import eval_prompt

    it = item(1)
    data, out = write(tmp_path, [it]), tmp_path / "out"
    with FakeOpenAIServer(Script()) as srv:
        assert run_main(argv(data, out, srv)) == 0
        reqs = [r for r in srv.requests if r.body.get("model") in SMALL]
    assert {r.body["model"] for r in reqs} == set(SMALL)
    for r in reqs:
        assert r.body["messages"] == [{"role": "user", "content": eval_prompt(it)}]
        assert r.body["temperature"] == 0.0 and r.body["max_tokens"] == 2000
        assert "authorization" not in r.headers or KEY not in r.headers["authorization"]  # no OpenAI key sent


def test_resume_never_reasks_a_finished_model_answer(tmp_path):
    data, out = write(tmp_path, [item(1), item(2)]), tmp_path / "out"
    script = Script(small_letters={("gemma-tiny", 1): "A", ("gemma-tiny", 2): "C"}, gpt_status=500)
    with FakeOpenAIServer(script) as srv:  # GPT-4o down: the items fail after the small models answered
        assert run_main(argv(data, out, srv, "--max_retries", "0")) == 1
        assert small_requests(srv) == 6
    with FakeOpenAIServer(Script(small_letters=script.small_letters)) as srv:
        assert run_main(argv(data, out, srv)) == 0
        assert small_requests(srv) == 0 and gpt_requests(srv) == 2
    merged, _ = merged_and_summary(out)
    assert [r["status"] for r in merged] == ["kept", "kept"]
    assert merged[0]["difficulty"]["gemma-tiny"]["extracted"] == "A"


def test_an_edited_question_is_asked_again(tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer(Script()) as srv:
        assert run_main(argv(write(tmp_path, [item(1)]), out, srv)) == 0
        edited = item(1, "Question number 1: a patient presents with finding F1 only. What is the diagnosis?")
        assert run_main(argv(write(tmp_path, [edited]), out, srv)) == 0
        assert small_requests(srv) == 6


def test_dry_run_counts_the_small_model_requests(tmp_path):
    data = write(
        tmp_path, [item(1), item(2), item(3, "Question number 3: all of the following are true EXCEPT")]
    )
    with FakeOpenAIServer(Script()) as srv:
        proc = run_script(SCRIPT, *argv(data, tmp_path / "out", srv, "--filter_data", "--dry_run"))
        assert proc.returncode == 0, proc.stderr
        assert not srv.requests
    assert f"6 requests to {','.join(SMALL)}" in proc.stdout  # item 3 dropped for free: not counted
    assert "question_form 1" in proc.stdout
    assert "4 requests to gpt-4o" in proc.stdout


def test_dry_run_after_a_partial_run_counts_only_unsaved_answers(tmp_path):
    data, out = write(tmp_path, [item(1), item(2)]), tmp_path / "out"
    with FakeOpenAIServer(Script(gpt_status=500)) as srv:
        run_main(argv(data, out, srv, "--max_retries", "0", "--limit_num", "1"))
        proc = run_script(SCRIPT, *argv(data, out, srv, "--dry_run"))
    assert proc.returncode == 0, proc.stderr
    assert f"3 requests to {','.join(SMALL)}" in proc.stdout


def test_max_cost_covers_the_small_models(tmp_path):
    data, out = write(tmp_path, [item(n) for n in range(1, 7)]), tmp_path / "out"
    with FakeOpenAIServer(Script(small_letters={("gemma-tiny", n): "A" for n in range(1, 7)})) as srv:
        code = run_main(
            argv(data, out, srv, "--num_process", "1", "--difficulty_price", "1000,1000", "--max_cost", "0.5")
        )
        assert code == 3  # stopped by the budget with work left
        first = small_requests(srv)
        assert 0 < first < 18
        assert run_main(argv(data, out, srv, "--num_process", "1")) == 0
        assert small_requests(srv) == 18  # the second run asked only what the first did not
    merged, summary = merged_and_summary(out)
    assert summary["kept"] == 6


def test_item_without_a_correct_letter_skips_the_difficulty_filter(tmp_path):
    it = item(1, answer_idx=None)
    it["answer"] = "something not among the options"
    data, out = write(tmp_path, [it]), tmp_path / "out"
    with FakeOpenAIServer(Script()) as srv:
        assert run_main(argv(data, out, srv)) == 0
        assert small_requests(srv) == 0
    merged, _ = merged_and_summary(out)
    assert merged[0]["status"] == "kept" and "skipped" in merged[0]["difficulty"]


def test_answer_text_gives_the_letter_when_answer_idx_is_missing(tmp_path):
    data, out = write(tmp_path, [item(1, answer_idx=None)]), tmp_path / "out"
    with FakeOpenAIServer(Script()) as srv:
        assert run_main(argv(data, out, srv)) == 0
    merged, _ = merged_and_summary(out)
    assert merged[0]["drop_step"] == "difficulty"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--difficulty_models", "a,b"], "--difficulty_models needs --difficulty_api_url"),
        (["--min_question_length", "-1"], "--min_question_length must be 0 or more"),
        (["--decontaminate_against", "/nonexistent/eval.json"], "evaluation file not found"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, flags, message):
    data = write(tmp_path, [item(1)])
    proc = run_script(SCRIPT, "--data_path", data, "--output_dir", tmp_path / "out", "--api_key", KEY, *flags)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_decontamination_default_file_only_when_present(tmp_path, monkeypatch):
    data = write(tmp_path, [item(1, f"Question number 1: {EVAL_Q}"), item(2)])
    with FakeOpenAIServer(Script()) as srv:
        monkeypatch.setattr(construct, "DEFAULT_EVAL_FILE", tmp_path / "absent.json")
        assert run_main(argv(data, tmp_path / "o1", srv, small=False, decontam=None)) == 0
        merged, summary = merged_and_summary(tmp_path / "o1")
        assert summary["dropped"]["decontamination"] == 0
        assert summary["decontamination"]["note"].startswith("skipped")
        monkeypatch.setattr(construct, "DEFAULT_EVAL_FILE", eval_file(tmp_path))
        assert run_main(argv(data, tmp_path / "o2", srv, small=False, decontam=None)) == 0
        merged, summary = merged_and_summary(tmp_path / "o2")
        assert [r.get("drop_step") for r in merged] == ["decontamination", None]
        assert gpt_requests(srv, 1) == 1  # only from the first run (rewrite without --filter_data)


def test_negative_question_rule_can_be_turned_off(tmp_path):
    data = write(tmp_path, [item(1, "Question number 1: all of the following cause F1 EXCEPT")])
    with FakeOpenAIServer(Script()) as srv:
        assert (
            run_main(argv(data, tmp_path / "out", srv, "--drop_negative_questions", "False", small=False))
            == 0
        )
    merged, _ = merged_and_summary(tmp_path / "out")
    assert merged[0]["status"] == "kept"


@pytest.mark.parametrize(
    "question",
    [
        "All of the following are true about digoxin, except:",
        "Which of the following is NOT a feature of nephrotic syndrome?",
        "All of the following drugs cause hypoglycemia EXCEPT",
        "Which of the following statements about asthma is false?",
        "Which one is incorrect regarding lithium?",
        "Mark the false statement about thalassemia",
        "Which of the following is not a cause of microcytic anemia?",
        "Select all that apply: causes of fever in returning travellers",
        "下列哪项除外",
        "关于糖尿病，下列说法错误的是",
    ],
)
def test_question_forms_asking_for_the_incorrect_option_drop(question):
    assert check(question)[0] == "question_form"


@pytest.mark.parametrize(
    "question",
    [
        "A 45-year-old man did not respond to treatment. Which of the following is the most likely diagnosis?",
        "A screening test gave a false positive result. What is the best next step?",
        "A patient with a false-negative rapid test returns with fever. What is the diagnosis?",
    ],
)
def test_ordinary_questions_are_not_taken_for_negative_ones(question):
    assert check(question) is None


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("Evaluation: Pass\n\nThe case needs several steps of reasoning, so it is not Too Simple.", "Pass"),
        ("Too Simple\n\nIt tests recall of one fact, so it does not pass.", "Too Simple"),
        ("Bypass surgery is the answer here; Too Simple", "Too Simple"),
    ],
)
def test_filter_verdict_parser_reads_the_three_misread_replies(reply, verdict):
    assert parse_filter_verdict(reply) == verdict


def test_misread_reply_through_the_script(tmp_path):
    reply = "Evaluation: Pass\n\nThe case needs several steps of reasoning, so it is not Too Simple."
    data, out = write(tmp_path, [item(1)]), tmp_path / "out"
    with FakeOpenAIServer(Script(verdicts={1: reply})) as srv:
        assert run_main(argv(data, out, srv, "--filter_data", small=False)) == 0
    merged, _ = merged_and_summary(out)
    assert merged[0]["status"] == "kept" and merged[0]["filter_verdict"] == "Pass"


def test_filter_prompt_asks_the_papers_criteria_no_stricter():
    text = filter_prompt(item(1))
    for verdict in ("Pass", "Too Simple", "Ambiguous Answer", "Not Reformulatable"):
        assert f"- {verdict}" in text
    assert "deeper reasoning" in text and "too simple" in text.lower()
    assert "incorrect option" in text and "more than one correct answer" in text
    assert "clear ground-truth answer" in text
    for stricter in ("several steps", "single fact", "short and definite"):
        assert stricter not in text


def test_verifier_judges_correctness_without_added_leniency():
    for lang in ("en", "zh"):
        text = verify_prompt("resp", "ref", lang)
        for lenient in ("more specific", "equivalent", "wording may differ", "更具体", "等价", "措辞"):
            assert lenient not in text
        assert '"True"' in text and '"False"' in text


def test_paper_settings_flag():
    from huatuo_o1.datagen.search import parse_args

    a = parse_args(["--data_path", "x"])
    assert (a.max_search_depth, a.max_search_attempts, a.efficient_search) == (2, 1, True)
    a = parse_args(["--data_path", "x", "--paper_settings"])
    assert (a.max_search_depth, a.max_search_attempts, a.efficient_search) == (3, 3, True)
    a = parse_args(["--data_path", "x", "--paper_settings", "--max_search_depth", "5"])
    assert (a.max_search_depth, a.max_search_attempts) == (5, 3)


def stage1_output(n: int) -> list[dict]:
    recs = []
    for i in range(1, n + 1):
        recs.append(
            {
                **item(i),
                "process_id": i,
                "status": "kept",
                "Open-ended Verifiable Question": f"Open question {i}?",
                "Ground-True Answer": f"B{i}",
            }
        )
    recs.append({**item(n + 1), "process_id": n + 1, "status": "filtered", "drop_step": "gpt_filter"})
    recs.append({**item(n + 2), "process_id": n + 2, "status": "filtered", "drop_step": "decontamination"})
    recs.append({**recs[0], "process_id": n + 3})  # the same problem twice
    return recs


def test_split_is_deterministic_without_overlap_and_adds_closed_set(tmp_path):
    src = write(tmp_path, stage1_output(30), "stage1.json")
    args = [
        "--data_path",
        src,
        "--sft_size",
        "10",
        "--rl_size",
        "12",
        "--closed_set",
        src,
        "--closed_size",
        "5",
    ]
    proc = run_script("scripts/split_stage1.py", *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    sft = json.loads((tmp_path / "stage1_sft_10.json").read_text())
    rl = json.loads((tmp_path / "stage1_rl_13.json").read_text())
    assert (
        report["sft"] == 10 and report["rl_open_ended"] == 12 and report["repeated_questions_left_out"] == 1
    )
    sft_q = {r["Open-ended Verifiable Question"] for r in sft}
    rl_open = [r for r in rl if r["problem_type"] == "open_ended"]
    closed = [r for r in rl if r["problem_type"] == "closed_set"]
    assert not sft_q & {r["Open-ended Verifiable Question"] for r in rl}
    assert len(rl_open) == 12 and len(closed) == 1  # only the filtered (not contaminated) item is free
    assert closed[0]["process_id"] == 31
    assert closed[0]["Ground-True Answer"] == "Disease B31"
    assert closed[0]["Open-ended Verifiable Question"].endswith(
        "A. Disease A31\nB. Disease B31\nC. Disease C31"
    )
    # the same input in another order gives the same sets
    shuffled = write(tmp_path, list(reversed(stage1_output(30))), "other.json")
    proc = run_script(
        "scripts/split_stage1.py", "--data_path", shuffled, "--sft_size", "10", "--rl_size", "12"
    )
    assert proc.returncode == 0, proc.stderr
    sft2 = json.loads((tmp_path / "other_sft_10.json").read_text())
    assert {r["Open-ended Verifiable Question"] for r in sft2} == sft_q


def test_split_with_fewer_items_shares_them_in_proportion(tmp_path):
    src = write(tmp_path, stage1_output(9), "stage1.json")
    proc = run_script("scripts/split_stage1.py", "--data_path", src)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["sft"], report["rl"]) == (4, 5) and "shared" in report["note"]


def test_split_bad_input_exits_2(tmp_path):
    proc = run_script("scripts/split_stage1.py", "--data_path", tmp_path / "missing.json")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
