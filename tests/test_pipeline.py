"""The stages talk only through files (docs/data_formats.md): chain the real scripts end to end.

stage 1 (loopback "GPT-4o") -> stage 2 (same server, scripted search model) -> SFT on the search
output -> PPO on the stage-1 problems starting from the SFT model -> evaluation of the PPO policy
with the in-process backend. Tiny random models; a few steps each.
"""

from __future__ import annotations

import json

from huatuo_o1.testing import search as sm
from huatuo_o1.testing.openai_server import FakeOpenAIServer
from tests.helpers import run_script

OPEN_Q, GT = "Open-ended Verifiable Question", "Ground-True Answer"
N = 6  # item 6 is filtered out by stage 1


def mcq(i: int) -> dict:
    return {
        "question": f"MCQ {i}: a patient with finding F{i}. Diagnosis?",
        "options": {"A": f"A{i}", "B": f"B{i}", "C": f"C{i}"},
        "answer_idx": "A",
        "answer": f"A{i}",
    }


def responder(req):
    prompt = req.prompt
    if "<Multiple-choice Question>" in prompt:  # stage 1
        i = int(prompt.split("MCQ ")[1].split(":")[0])
        if "four verdicts" in prompt:
            return "Too Simple" if i == N else "Pass"
        q = f"Case {i}: which diagnosis?"
        return json.dumps({OPEN_Q: q, GT: sm.scripted_answer(q, i % 2)})  # right at once or after 1 step
    return sm.responder(req)  # stage 2


def test_stages_chain_through_their_files(tmp_path, tiny_lm_dir, tiny_verifier_dir):
    mcq_path = tmp_path / "mcq.json"
    mcq_path.write_text(json.dumps([mcq(i) for i in range(1, N + 1)]))
    out = tmp_path / "output_data"
    api = ["--model_name", "gpt-4o", "--api_key", "sk-test-pipeline", "--output_dir", str(out)]
    with FakeOpenAIServer(responder) as srv:
        api += ["--api_url", srv.url]
        p1 = run_script(
            "construct_verifiable_medical_problems.py", "--data_path", mcq_path, "--filter_data", *api
        )
        assert p1.returncode == 0, p1.stderr
        stage1 = out / f"mcq_verifiable_final_{N}.json"
        problems = json.loads(stage1.read_text())
        assert [r["status"] for r in problems] == ["kept"] * (N - 1) + ["filtered"]

        p2 = run_script("search_for_complex_reasoning_path.py", "--data_path", stage1, "--seed", "0", *api)
        assert p2.returncode == 0, p2.stderr
    sft_data = out / f"mcq_verifiable_final_{N}_CoT_search_final_{N - 1}.json"
    records = json.loads(sft_data.read_text())
    assert all(r["Question"] and r["Complex_CoT"] and r["Response"] for r in records)

    ckpts = tmp_path / "ckpts"
    p3 = run_script(
        "SFT_stage1.py", "--model_path", tiny_lm_dir, "--data_path", sft_data, "--output_dir", ckpts,
        "--experiment_name", "sft", "--max_steps", "2", "--max_seq_len", "512", "--train_bsz_per_gpu", "2",
        "--gradient_accumulation_steps", "1", "--report_to", "none", "--log_dir", tmp_path / "logs",
    )  # fmt: skip
    assert p3.returncode == 0, p3.stderr
    assert (ckpts / "sft" / "config.json").exists()

    p4 = run_script(
        "RL_stage2.py", "--model_name_or_path", ckpts / "sft", "--reward_model_path", tiny_verifier_dir,
        "--dataset_name", stage1, "--output_dir", ckpts, "--run_name", "ppo", "--response_length", "8",
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
        "--local_rollout_forward_batch_size", "2", "--total_episodes", "4", "--num_ppo_epochs", "1",
        "--num_sample_generations", "0", "--report_to", "none", "--save_strategy", "no",
    )  # fmt: skip
    assert p4.returncode == 0, p4.stderr
    assert "RL data: 4 train, 1 eval, dropped 1 without question/answer" in p4.stderr

    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"demo_source": [mcq(1), mcq(2)]}))
    p5 = run_script(
        "evaluation/eval.py", "--model_name", ckpts / "ppo", "--eval_file", eval_file, "--backend", "hf",
        "--max_new_tokens", "8", "--batch_size", "2", "--seed", "0", "--output_dir", tmp_path / "eval",
    )  # fmt: skip
    assert p5.returncode == 0, p5.stderr
    assert "demo_source" in p5.stdout
