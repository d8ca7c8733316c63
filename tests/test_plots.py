"""plots: PNG curves from a trainer's log history, only for the keys that were logged."""

from __future__ import annotations

from huatuo_o1.train.plots import RL_CURVES, SFT_CURVES, make_plot_callback, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sft_curves_written_as_png(tmp_path):
    history = [
        {"loss": 2.0 - i / 10, "learning_rate": 1e-5, "token_accuracy": i / 10, "step": i} for i in range(5)
    ]
    history.append({"train_runtime": 1.0, "step": 5})  # the summary line has none of the keys
    files = write_plots(history, tmp_path / "plots", SFT_CURVES)
    assert sorted(f.name for f in files) == ["learning_rate.png", "loss.png", "token_accuracy.png"]
    for f in files:
        assert f.read_bytes()[:8] == PNG_MAGIC
    assert not list((tmp_path / "plots").glob("*.tmp"))


def test_rl_curves_only_for_logged_keys(tmp_path):
    history = [{"reward/mean": 0.1 * i, "reward/correct": 0.5, "reward/well_formed": 1.0, "objective/kl": 0.01,
                "episode": 4 * i, "step": i} for i in range(1, 4)]  # fmt: skip
    files = write_plots(history, tmp_path, RL_CURVES)
    assert sorted(f.name for f in files) == ["kl.png", "reward.png", "shares.png"]
    assert write_plots([], tmp_path / "none", RL_CURVES) == []


def test_callback_writes_on_the_main_process_only(tmp_path):
    from transformers import TrainerControl, TrainerState

    cb = make_plot_callback(tmp_path, SFT_CURVES)
    state = TrainerState()
    state.log_history = [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}]
    state.is_world_process_zero = False
    cb.on_train_end(None, state, TrainerControl())
    assert not (tmp_path / "plots").exists()
    state.is_world_process_zero = True
    cb.on_train_end(None, state, TrainerControl())
    assert (tmp_path / "plots" / "loss.png").exists()


def test_one_line_says_what_the_run_learnt(tmp_path, capsys):
    from transformers import TrainerControl, TrainerState

    from huatuo_o1.train.plots import summary_line

    history = [{"reward/mean": 0.1, "reward/correct": 0.0, "reward/well_formed": 0.5, "objective/kl": 0.0,
                "lr": 5e-7, "step": 1},
               {"reward/mean": 0.55, "reward/correct": 0.5, "reward/well_formed": 1.0, "objective/kl": 0.02,
                "lr": 5e-7, "step": 2}]  # fmt: skip
    assert summary_line(history, RL_CURVES, 2) == (
        "2 steps; reward/mean 0.1 -> 0.55, reward/correct 0 -> 0.5, reward/well_formed 0.5 -> 1, "
        "objective/kl 0 -> 0.02"
    )
    cb = make_plot_callback(tmp_path, SFT_CURVES)
    state = TrainerState()
    state.log_history, state.global_step = [{"loss": 3.0, "step": 1}, {"loss": 1.25, "step": 8}], 8
    cb.on_train_end(None, state, TrainerControl())
    assert capsys.readouterr().out.strip().splitlines()[-1] == "training finished: 8 steps; loss 3 -> 1.25"
