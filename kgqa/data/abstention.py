"""Scoring a system that may abstain, in SQuAD 2.0's terms, over a mix of answerable and unanswerable questions.

Each question comes with its kind (``answerable``, or a kind of unanswerable: ``entity``, ``relation``,
``out_of_scope``), whether the shown answer is right (EM_O; never for an unanswerable question), whether the system
abstained and its confidence that the shown answer is right. Pure numpy: the evaluation and the confidence's fit
share it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

ANSWERABLE = "answerable"


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` separating ``positive`` from the rest (ties count half); None when one
    side is empty."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_bins(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width confidence bins: count, mean confidence and accuracy of each non-empty bin."""
    confidence, right = np.asarray(confidence, dtype=np.float64), np.asarray(right, dtype=np.float64)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "count": int(mask.sum()),
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(right[mask].mean()),
                }
            )
    return out


def monotone(bins: Sequence[dict[str, float]], min_count: int = 1) -> bool:
    """Whether answers in a higher confidence bin are right at least as often as those in any lower one (bins with
    fewer than ``min_count`` answers left out: their accuracy is noise)."""
    accuracies = [b["accuracy"] for b in bins if b["count"] >= min_count]
    return all(later >= earlier for earlier, later in itertools.pairwise(accuracies))


def expected_calibration_error(bins: Sequence[dict[str, float]]) -> float:
    """ECE of ``calibration_bins``: the count-weighted mean gap between confidence and accuracy."""
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins) / total) if total else 0.0


def risk_coverage(confidence: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answering the most confident first: (coverage, precision, threshold) after each question answered."""
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="mergesort")
    hits = np.cumsum(np.asarray(right, dtype=np.float64)[order])
    answered = np.arange(1, len(order) + 1)
    return answered / max(1, len(order)), hits / answered, np.asarray(confidence, dtype=np.float64)[order]


def coverage_at_precision(confidence: np.ndarray, right: np.ndarray, precision: float) -> float:
    """The largest share of questions answered (most confident first, cut between distinct confidences) whose
    answers are right at least ``precision`` of the time; 0 when no cut reaches it."""
    coverage, prec, thresholds = risk_coverage(confidence, right)
    # only cuts where the next confidence is lower: a threshold cannot split tied questions
    cut = np.append(thresholds[1:] < thresholds[:-1], True)
    ok = (prec >= precision) & cut
    return float(coverage[ok].max()) if ok.any() else 0.0


def abstention_report(
    kinds: Sequence[str],
    right: np.ndarray,
    abstained: np.ndarray,
    confidence: np.ndarray,
) -> dict[str, Any]:
    """HasAns EM_O (an abstention is wrong), NoAns accuracy by kind, overall, AUROC, coverage at 95% and 99%
    precision, ECE on answerable questions; percentages except AUROC and ECE."""
    kinds_arr = np.asarray(kinds)
    right = np.asarray(right, dtype=bool)
    abstained = np.asarray(abstained, dtype=bool)
    confidence = np.asarray(confidence, dtype=np.float64)
    has = kinds_arr == ANSWERABLE
    answered_right = right & ~abstained
    no_ans = {str(k): _pct(abstained[kinds_arr == k]) for k in sorted(set(kinds)) if k != ANSWERABLE}
    correct = np.where(has, answered_right, abstained)
    bins_answerable, bins_all = calibration_bins(confidence[has], right[has]), calibration_bins(confidence, right)
    return {
        "questions": len(kinds_arr),
        "counts": {str(k): int((kinds_arr == k).sum()) for k in sorted(set(kinds))},
        "HasAns_EM_O": _pct(answered_right[has]),
        "HasAns_EM_O_never_abstaining": _pct(right[has]),
        "HasAns_abstained": _pct(abstained[has]),
        "NoAns": _pct(abstained[~has]),
        "NoAns_by_kind": no_ans,
        "overall": _pct(correct),
        "AUROC": _round(auroc(confidence, right)),
        "coverage_at_95_precision": round(100 * coverage_at_precision(confidence, right, 0.95), 2),
        "coverage_at_99_precision": round(100 * coverage_at_precision(confidence, right, 0.99), 2),
        "ECE_answerable": round(expected_calibration_error(bins_answerable), 4),
        "ECE_all": round(expected_calibration_error(bins_all), 4),
        "calibration_answerable": bins_answerable,
        "calibration_all": bins_all,
        # of all questions' answers: bins of 20 or more
        "monotone": monotone(bins_all, min_count=20),
    }


def _pct(mask: np.ndarray) -> float:
    return round(100 * float(mask.mean()), 2) if len(mask) else 0.0


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
