"""The per-source bar chart written next to evaluation results.

For each source two bars: the original layout's lenient score (the number the paper reports) and
our strict score, in percent, with the value on each bar. matplotlib draws it off screen (Agg
backend); without matplotlib the chart is skipped with one line on stderr and nothing else
changes. The PNG is written atomically (temp file renamed into place).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def write_chart(summary: dict, path: str | Path, title: str = "") -> Path | None:
    """Draw `summary` (eval.scoring.summarize) to `path`; the path written, or None when skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return None
    if not summary:
        return None
    path = Path(path)
    sources = list(summary)
    lenient = [100 * (summary[s]["lenient"] or 0.0) for s in sources]
    strict = [100 * summary[s]["strict"] for s in sources]
    width = 0.38
    xs = range(len(sources))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(sources) + 2), 4.5))
    try:
        b1 = ax.bar([x - width / 2 for x in xs], lenient, width, label="lenient (original layout)")
        b2 = ax.bar([x + width / 2 for x in xs], strict, width, label="strict (ours)")
        for bars in (b1, b2):
            ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(
            [f"{s}\n(n={summary[s]['count']})" for s in sources], rotation=20, ha="right", fontsize=8
        )
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 120)  # room above 100 % for the value labels and the legend
        ax.set_title(title or "accuracy per source", fontsize=10)
        ax.legend(fontsize=8, loc="upper right", ncol=2)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format="png", dpi=120)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        plt.close(fig)
    return path
