"""The constraint's pressure on a path: its name and relation tokens under the model's full softmax, equal to
transformers' own forward pass over the same target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kgqa.model.answerer import QuestionAnswerer
from kgqa.model.decode.pressure import PRESSURE_COLUMNS
from kgqa.model.modeling import load_checkpoint
from kgqa.model.options import DecodeOptions
from kgqa.model.segments import segment_bounds
from kgqa.trie import KBIndex


def test_pressure_is_the_full_softmax_of_the_paths_name_and_relation(tiny_model: Path, tiny_index: KBIndex) -> None:
    answerer = QuestionAnswerer.load(tiny_model, tiny_index, DecodeOptions(num_beams=3))
    questions = ["守望星光的歌手是谁？", "你知道龙晶用繁体字怎么写吗？", "Harry Potter的作者是谁？"]
    tops = [candidates[0] for candidates in answerer.answer(questions, top_k=1)]
    facts = [answerer.facts(q) for q in questions]
    found = answerer.proposer.pressure_of(facts, tops)
    assert found.shape == (3, len(PRESSURE_COLUMNS))
    codec, (model, _) = answerer.codec, load_checkpoint(tiny_model)
    for row, question, top in zip(found, questions, tops, strict=True):
        target = codec.encode(top.name, top.relation, top.meaning)
        ids, mask = answerer.runtime.tokenizer.batch([question])
        with torch.inference_mode():
            logits = model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), labels=torch.tensor([target])
            ).logits[0]
        free = torch.log_softmax(logits, dim=-1)[torch.arange(len(target)), torch.tensor(target)].numpy()
        first, second = segment_bounds(target, codec.sep_token_id)
        expected = [
            free[:first].sum(),
            free[first:second].sum(),
            free[first:second].min(),
            top.segments.name - free[:first].sum(),  # type: ignore[union-attr]
            top.segments.relation - free[first:second].sum(),  # type: ignore[union-attr]
        ]
        np.testing.assert_allclose(row, expected, atol=1e-4)
        assert row[0] <= 1e-6 and row[1] <= 1e-6  # log-probabilities
