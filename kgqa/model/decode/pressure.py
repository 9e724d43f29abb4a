"""How hard the KB constraint pushed the model along a path: the path's name and relation under the model *without*
the constraint.

The search renormalises each step over the tokens the KB allows, so a path the model would never write on its own can
score like one it wanted: when the relation asked for is missing, the entity's nearest relation takes its place
(制作方法 gone, 制作成本 left: after 制作 the KB forces 成本 at no cost). Here the path is fed once more after the
question and each of its name and relation tokens is scored by the full softmax over the vocabulary. The answer's
confidence reads these numbers for each question's top candidate only (a few decoder positions a question).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kgqa.model.decode.incremental import EncodedQuestions, IncrementalDecoder, width_passes
from kgqa.model.segments import SegmentScores, segment_bounds

PRESSURE_COLUMNS = ("name_free", "relation_free", "relation_free_min", "name_pressure", "relation_pressure")


def pressure_rows(
    decoder: IncrementalDecoder,
    encoded: EncodedQuestions,
    questions: Sequence[int],
    targets: Sequence[Sequence[int]],
    segments: Sequence[SegmentScores | None],
    sep_token_id: int,
) -> np.ndarray:
    """One row of ``PRESSURE_COLUMNS`` per path: ``targets[i]`` (its target ids) after question ``questions[i]`` of
    ``encoded``; ``segments[i]`` its constrained scores (the pressure is the constrained score less the free one)."""
    if not len(targets):
        return np.zeros((0, len(PRESSURE_COLUMNS)), dtype=np.float32)
    bounds = [segment_bounds(t, sep_token_id) for t in targets]
    # the hidden state after position p predicts token p: feed the start token and the tokens before the meaning
    runs = [[decoder.start_token_id, *t[: second - 1]] for t, (_, second) in zip(targets, bounds, strict=True)]
    states = np.empty((sum(map(len, runs)), decoder.output_weight.shape[1]), dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum([len(run) for run in runs])])
    for group in width_passes([len(run) for run in runs]):  # runs of like length together: little padding
        own = [runs[i] for i in group]
        hidden, _ = decoder.feed(
            decoder.empty_state(len(own)), own, [questions[i] for i in group], encoded, every_position=True
        )
        for row, i in enumerate(group):
            states[starts[i] : starts[i + 1]] = hidden[row, : len(runs[i])]
    tokens = np.concatenate([t[:second] for t, (_, second) in zip(targets, bounds, strict=True)]).astype(np.int64)
    free = decoder.full_log_probs(states)[np.arange(len(tokens)), tokens]
    out = np.zeros((len(targets), len(PRESSURE_COLUMNS)), dtype=np.float32)
    start = 0
    for i, ((first, second), own) in enumerate(zip(bounds, segments, strict=True)):
        scores = free[start : start + second]
        start += second
        name, relation = float(scores[:first].sum()), scores[first:second]
        out[i] = (
            name,
            float(relation.sum()),
            float(relation.min()) if len(relation) else 0.0,
            (own.name if own else 0.0) - name,
            (own.relation if own else 0.0) - float(relation.sum()),
        )
    return out
