"""PNG plots of a training run's logged curves, from the trainer's own log history.

At the end of a run, `PlotCallback` (a `TrainerCallback`, main process only) prints one line with
each curve's first and last value (`summary_line`) and writes one PNG per curve group into `<run folder>/plots/`: for SFT loss, learning rate and token accuracy; for PPO and
GRPO the reward, the correct and well-formed shares, the KL and the response length; for the
verifier its loss. A group whose keys were never logged is skipped. matplotlib draws with its Agg
renderer (no display needed) through its object API, so no global backend is changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# (file stem, title, candidate keys: every one that was logged is drawn)
SFT_CURVES = [
    ("loss", "training loss", ["loss"]),
    ("learning_rate", "learning rate", ["learning_rate"]),
    ("token_accuracy", "token accuracy on learnt tokens", ["token_accuracy"]),
]
RL_CURVES = [
    ("reward", "mean reward", ["reward/mean", "reward", "objective/scores"]),
    ("shares", "share correct / well-formed", ["reward/correct", "reward/well_formed"]),
    ("kl", "KL to the reference policy", ["objective/kl", "kl"]),
    ("response_length", "response length (tokens)", ["reward/response_length", "completions/mean_length"]),
    ("learning_rate", "learning rate", ["lr", "learning_rate"]),
]
VERIFIER_CURVES = [
    ("loss", "training loss", ["loss"]),
    ("learning_rate", "learning rate", ["learning_rate"]),
]
PLOTS_DIR = "plots"


def _series(log_history: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, entry in enumerate(log_history):
        v = entry.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        xs.append(entry.get("step", entry.get("episode", i)))
        ys.append(float(v))
    return xs, ys


def write_plots(log_history: list[dict], out_dir: str | Path, curves: list) -> list[Path]:
    """One PNG per curve group with data, in `out_dir`; returns the files written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    written = []
    for stem, title, keys in curves:
        lines = [(k, *_series(log_history, k)) for k in keys]
        lines = [(k, xs, ys) for k, xs, ys in lines if ys]
        if stem == "reward" and lines:
            lines = lines[:1]  # the first reward key logged is the reward; the rest are aliases
        if not lines:
            continue
        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for k, xs, ys in lines:
            ax.plot(xs, ys, marker="o" if len(ys) < 30 else None, label=k)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if stem == "shares":
            ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend()
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{stem}.png"
        tmp = path.with_suffix(".png.tmp")
        fig.savefig(tmp, format="png")
        tmp.replace(path)
        written.append(path)
    return written


def summary_line(log_history: list[dict], curves: list, steps: int) -> str:
    """One line on what a run learnt: each curve's first and last logged value (the learning rate
    left out), e.g. "8 steps; loss 3.12 -> 1.05, token_accuracy 0.41 -> 0.77"."""
    parts = []
    for stem, _, keys in curves:
        if stem == "learning_rate":
            continue
        for key in keys:
            _, ys = _series(log_history, key)
            if ys:
                parts.append(f"{key} {ys[0]:.3g} -> {ys[-1]:.3g}")
                if stem != "shares":
                    break  # the first logged key of a group is its value; the rest are aliases
    return f"{steps} steps; " + (", ".join(parts) if parts else "nothing logged")


def make_plot_callback(run_dir: str | Path, curves: list):
    """A TrainerCallback that writes the run's plots into `<run_dir>/plots` when training ends."""
    from transformers import TrainerCallback

    class PlotCallback(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            print(
                f"training finished: {summary_line(state.log_history, curves, state.global_step)}", flush=True
            )
            try:
                files = write_plots(state.log_history, Path(run_dir) / PLOTS_DIR, curves)
            except Exception as e:  # a plot never costs the trained model
                log.warning("could not write the training plots: %s", e)
                return
            if files:
                log.info("training curves: %s", ", ".join(str(f) for f in files))

    return PlotCallback()
