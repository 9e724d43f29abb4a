"""SQuAD 2.0-style scoring of a system that may abstain: AUROC, ECE, coverage at a precision, monotone bins."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kgqa.data.abstention import (
    abstention_report,
    auroc,
    calibration_bins,
    coverage_at_precision,
    expected_calibration_error,
    monotone,
)


@given(st.lists(st.tuples(st.sampled_from([0.1, 0.2, 0.5, 0.9]), st.booleans()), min_size=2, max_size=30))
def test_auroc_is_the_share_of_right_wrong_pairs_ordered_right(pairs: list[tuple[float, bool]]) -> None:
    scores = np.array([s for s, _ in pairs])
    positive = np.array([p for _, p in pairs])
    found = auroc(scores, positive)
    if positive.all() or not positive.any():
        assert found is None
        return
    pos, neg = scores[positive], scores[~positive]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    assert found is not None and abs(found - wins / (len(pos) * len(neg))) < 1e-9


def test_ece_bins_and_monotone_on_known_labels() -> None:
    # bin 0.1-0.2: 1 of 4 right; bin 0.5-0.6: 2 of 4; bin 0.9-1.0: 4 of 4
    confidence = np.array([0.15] * 4 + [0.55] * 4 + [0.95] * 4)
    right = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    bins = calibration_bins(confidence, right)
    assert [(b["count"], b["accuracy"]) for b in bins] == [(4, 0.25), (4, 0.5), (4, 1.0)]
    assert monotone(bins)
    expected = (4 * abs(0.15 - 0.25) + 4 * abs(0.55 - 0.5) + 4 * abs(0.95 - 1.0)) / 12
    assert abs(expected_calibration_error(bins) - expected) < 1e-9
    # the same confidences, the labels of the low and middle bins swapped: no longer monotone
    swapped = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert not monotone(calibration_bins(confidence, swapped))


def test_coverage_at_precision_never_splits_tied_confidences() -> None:
    confidence = np.array([0.9, 0.9, 0.8, 0.8, 0.1])
    right = np.array([1, 1, 1, 0, 0], dtype=bool)
    assert coverage_at_precision(confidence, right, 1.0) == 0.4  # the two at 0.9
    assert coverage_at_precision(confidence, right, 0.75) == 0.8  # 3 of 4 down to 0.8
    assert coverage_at_precision(np.array([0.5, 0.5]), np.array([1, 0], dtype=bool), 0.99) == 0.0


def test_report_counts_an_abstention_wrong_on_answerable_and_right_on_unanswerable() -> None:
    kinds = ["answerable", "answerable", "answerable", "entity", "relation", "out_of_scope"]
    right = np.array([1, 1, 0, 0, 0, 0], dtype=bool)
    confidence = np.array([0.9, 0.3, 0.8, 0.2, 0.6, 0.1])
    report = abstention_report(kinds, right, confidence < 0.5, confidence)
    assert report["HasAns_EM_O"] == round(100 / 3, 2)  # the one answered and right; the abstention counts wrong
    assert report["HasAns_EM_O_never_abstaining"] == round(200 / 3, 2)
    assert report["NoAns_by_kind"] == {"entity": 100.0, "out_of_scope": 100.0, "relation": 0.0}
    assert report["overall"] == 50.0  # right answer, entity, out of scope
    assert report["AUROC"] == 1.0 - 2 / 8  # positives 0.9, 0.3 against 0.8, 0.2, 0.6, 0.1
