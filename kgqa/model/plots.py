"""Figures written beside evaluation reports (matplotlib, in the ``dev`` extra; imported only to draw)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgqa.data.abstention import ANSWERABLE, risk_coverage


def plot_risk_coverage(
    confidence: np.ndarray,
    right: np.ndarray,
    kinds: Sequence[str],
    threshold: float,
    out: str | Path,
    title: str,
) -> Path:
    """Risk (share of answered questions answered wrongly, unanswerable ones included) against coverage, answering
    the most confident first; the threshold's point marked. Answerable questions alone as a second curve."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    confidence, right = np.asarray(confidence), np.asarray(right, dtype=bool)
    has = np.asarray(kinds) == ANSWERABLE
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, mask in (("all questions", np.ones(len(right), dtype=bool)), ("answerable only", has)):
        coverage, precision, _ = risk_coverage(confidence[mask], right[mask])
        ax.plot(100 * coverage, 100 * (1 - precision), label=label)
    answered = confidence >= threshold
    if answered.any():
        ax.scatter(
            [100 * answered.mean()],
            [100 * (1 - right[answered].mean())],
            color="black",
            zorder=3,
            label=f"threshold {threshold:g}",
        )
    ax.set_xlabel("coverage: questions answered (%)")
    ax.set_ylabel("risk: answered wrongly (%)")
    ax.set_title(f"risk-coverage ({title})")
    ax.set_xlim(0, 100)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
