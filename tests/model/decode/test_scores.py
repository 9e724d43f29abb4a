"""PathScoreRecorder: each hypothesis' score as the sum of the processed log-probs it was built from."""

from __future__ import annotations

import math

import pytest
import torch

from kgqa.model.decode.scores import PathScoreRecorder

BOS, EOS, SEP, A, B = 0, 2, 3, 5, 6


def _log_probs(values: dict[int, float], size: int = 8) -> torch.Tensor:
    row = torch.full((size,), -math.inf)
    for token, p in values.items():
        row[token] = math.log(p)
    return row


def test_scores_and_segments_are_the_running_sums_of_the_chosen_tokens() -> None:
    recorder = PathScoreRecorder(num_beams=1, eos_token_id=EOS)
    steps = [  # (target so far, the log-probs the search sees at that step)
        ([], {A: 0.5, B: 0.5}),
        ([A], {SEP: 1.0}),
        ([A, SEP], {B: 0.25, A: 0.75}),
        ([A, SEP, B], {SEP: 0.5, EOS: 0.5}),
        ([A, SEP, B, SEP], {EOS: 1.0}),
    ]
    for target, values in steps:
        recorder(torch.tensor([[BOS, *target]]), _log_probs(values).unsqueeze(0))
    full = [A, SEP, B, SEP, EOS]
    assert recorder.score(0, full) == pytest.approx(math.log(0.5) + math.log(0.25) + math.log(0.5))
    segments = recorder.segments(0, full, SEP)
    assert segments.name == pytest.approx(math.log(0.5))  # A, then its separator (log 1)
    assert segments.relation == pytest.approx(math.log(0.25) + math.log(0.5))  # B, then its separator
    assert segments.meaning == pytest.approx(0.0)  # an empty meaning: EOS at log 1
    assert segments.total == pytest.approx(recorder.score(0, full))
    # ending after B (no meaning separator) was a hypothesis too, with its own score
    assert recorder.score(0, [A, SEP, B, EOS]) == pytest.approx(math.log(0.5) + math.log(0.25) + math.log(0.5))
    # never a hypothesis: -inf
    assert recorder.score(0, [B, EOS]) == -math.inf


def test_rows_are_matched_to_questions_by_beam() -> None:
    recorder = PathScoreRecorder(num_beams=2, eos_token_id=EOS)
    # two questions, two beams each; question 1's beams see other log-probs than question 0's
    recorder(torch.full((4, 1), BOS), torch.stack([_log_probs({A: 0.5, EOS: 0.5})] * 2 + [_log_probs({A: 1.0})] * 2))
    assert recorder.score(0, [EOS]) == pytest.approx(math.log(0.5))
    assert recorder.score(1, [EOS]) == -math.inf
