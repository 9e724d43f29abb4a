from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.model.candidate import Candidate
from kgqa.model.decode.explain import trace_path
from kgqa.model.modeling import load_checkpoint
from kgqa.model.targets import TargetCodec
from kgqa.trie import KBIndex, TokenConstraint
from kgqa.trie.keys import END_CODE, SEP, path_key


@pytest.fixture(scope="module")
def spelling(tiny_model: Path, tiny_index: KBIndex) -> tuple[TargetCodec, TokenConstraint]:
    """The tiny model's target codec and its constraint over the tiny index."""
    _, tokenizer = load_checkpoint(tiny_model)
    codec = TargetCodec(tokenizer)
    return codec, codec.constraint(tiny_index)


def test_each_step_allows_what_the_index_allows_and_the_kb_completes_a_determined_path(
    spelling: tuple[TargetCodec, TokenConstraint], tiny_index: KBIndex
) -> None:
    codec, constraint = spelling
    candidate = Candidate("刘晓华", "主讲课程", "广东工业大学教授", "《固体物理》", 0.0, beam_rank=0)
    trace = trace_path(candidate, codec, constraint)

    key = path_key("刘晓华", "主讲课程", "广东工业大学教授")
    assert len(trace.steps) == len(key) + 1  # every character and separator, then the end
    assert "".join(s.text if s.part != "separator" else SEP for s in trace.steps[:-1]) == key
    assert [s.part for s in trace.steps[:5]] == ["name", "name", "name", "separator", "relation"]
    assert trace.steps[-1].part == "end"
    ended_at = None
    for position, step in enumerate(trace.steps):
        allowed = tiny_index.next_codepoints(key[:position])
        assert step.allowed == len(allowed)
        assert step.forced == (len(allowed) == 1)
        if ended_at is None and len(allowed) == 1 and allowed[0] != END_CODE and tiny_index.completion(key[:position]):
            ended_at = position
    # 刘 starts two keys (two 刘晓华 entities); after 刘晓华|主 only one key is left: decoding ended there
    assert ended_at == len("刘晓华|主")
    assert trace.steps[ended_at].text == "讲"
    assert all(s.decoded for s in trace.steps[:ended_at]) and not any(s.decoded for s in trace.steps[ended_at:])
    assert trace.source == "beam"
    assert trace.forced_steps == sum(s.allowed == 1 for s in trace.steps)
    assert trace.decoded_steps == ended_at
    assert trace.chosen_steps + trace.forced_steps == len(trace.steps)  # the counts add up
    assert trace.chosen_steps == sum(s.allowed > 1 for s in trace.steps) > 0
    assert (
        trace.completed_steps
        == len(trace.steps) - ended_at
        == trace.forced_steps - sum(s.forced for s in trace.steps[:ended_at])
    )


def test_without_early_ending_or_for_an_anchored_path_every_step_is_decoded(
    spelling: tuple[TargetCodec, TokenConstraint],
) -> None:
    codec, constraint = spelling
    beam = Candidate("龙编站", "坐标", "", "21°2′22.9″N105°51′1.1″E", 0.0, beam_rank=0)
    assert all(s.decoded for s in trace_path(beam, codec, constraint, end_when_determined=False).steps)
    anchored = Candidate("龙编站", "坐标", "", "21°2′22.9″N105°51′1.1″E", 0.0)
    trace = trace_path(anchored, codec, constraint)
    assert trace.source == "name-anchored"
    assert trace.decoded_steps == len(trace.steps)
    # an empty meaning: the key ends right after the second separator
    assert [s.part for s in trace.steps[-2:]] == ["separator", "end"]
