"""KgCLUE's official metrics, identical to its ``evaluate_f1_em.py``.

Each of subject, predicate, object is lower-cased with white space collapsed; EM is exact match, F1 is
``2 * LCS(a, b) / (len(a) + len(b))`` over characters (LCS = longest common subsequence; 0 when both are empty).
``All`` compares the triple (EM) and the concatenation S+P+O (F1). The leaderboard score is (EM_O + F1_O) / 2.
Everything is reported on a 0-100 scale, averaged over the gold questions.
"""

from __future__ import annotations

from collections.abc import Sequence

import pylcs

from kgqa.data.questions import Answer

METRIC_KEYS = ("EM_S", "EM_P", "EM_O", "EM_All", "F1_S", "F1_P", "F1_O", "F1_All", "score")
_EMPTY = Answer("", "", "")


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings: pylcs, what KgCLUE's official script uses (C++,
    about 20× the pure-Python dynamic programme; the look-ahead and the ranker's features call it inside decoding)."""
    return pylcs.lcs_sequence_length(a, b)


def f1_sim(a: str, b: str) -> float:
    if not a and not b:
        return 0.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


def object_right(predicted: Answer | None, gold: Answer | None) -> bool:
    """EM_O of one answer: its object is the gold object (normalised); never without both."""
    return predicted is not None and gold is not None and normalize(predicted.object) == normalize(gold.object)


def evaluate_answers(predictions: Sequence[Answer | None], golds: Sequence[Answer]) -> dict[str, float]:
    """Official KgCLUE metrics of predictions against gold answers, in order. ``None`` counts as an empty answer."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold answers")
    if not golds:
        raise ValueError("no gold answers to evaluate against")
    sums = dict.fromkeys(METRIC_KEYS[:-1], 0.0)
    for predicted, gold in zip(predictions, golds, strict=True):
        ps, pp, po = (normalize(x) for x in (predicted or _EMPTY))
        gs, gp, go = (normalize(x) for x in gold)
        sums["EM_S"] += ps == gs
        sums["EM_P"] += pp == gp
        sums["EM_O"] += po == go
        sums["EM_All"] += (ps, pp, po) == (gs, gp, go)
        sums["F1_S"] += f1_sim(ps, gs)
        sums["F1_P"] += f1_sim(pp, gp)
        sums["F1_O"] += f1_sim(po, go)
        sums["F1_All"] += f1_sim(ps + pp + po, gs + gp + go)
    metrics = {key: 100.0 * value / len(golds) for key, value in sums.items()}
    metrics["score"] = (metrics["EM_O"] + metrics["F1_O"]) / 2
    return metrics
