"""Constrained decoding never leaves the KB; the look-ahead never admits a token the trie forbids."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList

from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.decode.constrained import KBConstraintLogitsProcessor
from kgqa.model.decode.lookahead import RelationLookahead, RelationLookaheadLogitsProcessor
from kgqa.model.decode.step import DecodingStep
from kgqa.model.facts import QuestionFacts
from kgqa.model.modeling import build_model
from kgqa.model.targets import TargetCodec
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.trie import SEP, KBIndex, path_key
from tests.conftest import index_of_triples

NAME_CHARS = "ab龙星光x"
WORD = st.text(alphabet=NAME_CHARS, min_size=1, max_size=4)
TRIPLE = st.tuples(WORD, st.one_of(st.just(""), WORD), WORD, WORD)  # name, meaning, relation, object
KBS = st.lists(TRIPLE, min_size=1, max_size=12)


def _kb_set(triples: list[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
    return {(n, r, m, o) for n, m, r, o in triples}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    triples=KBS,
    seed=st.integers(0, 2**16),
    beams=st.integers(1, 4),
    top_k=st.integers(1, 4),
    lookahead=st.booleans(),
    end_early=st.booleans(),
    questions=st.lists(st.text(alphabet=NAME_CHARS + "的是什么?", min_size=1, max_size=12), min_size=1, max_size=3),
)
def test_random_model_on_random_kb_outputs_only_kb_triples(
    triples: list, seed: int, beams: int, top_k: int, lookahead: bool, end_early: bool, questions: list[str]
) -> None:
    """A randomly initialised model gives random logits; whatever they are, every answer is a triple of the KB."""
    with tempfile.TemporaryDirectory() as root:
        index = index_of_triples(triples, Path(root))
        tokenizer = build_char_tokenizer([index.alphabet, "的是什么?"])
        torch.manual_seed(seed)
        model = build_model(tokenizer, "tiny")
        options = DecodeOptions(num_beams=beams, lookahead=lookahead, end_when_determined=end_early)
        answerer = QuestionAnswerer.from_model(model, tokenizer, index, options)
        kb = _kb_set(triples)
        results = answerer.answer(questions, top_k=top_k)
        assert len(results) == len(questions)
        for candidates in results:
            assert 1 <= len(candidates) <= top_k  # the KB is not empty, so some path always fits
            assert len({(c.name, c.relation, c.meaning) for c in candidates}) == len(candidates)  # distinct
            assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
            for c in candidates:
                assert (c.name, c.relation, c.meaning, c.object) in kb


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    triples=KBS,
    seed=st.integers(0, 2**16),
    lookahead=st.booleans(),
    questions=st.lists(st.text(alphabet=NAME_CHARS + "的是什么?", min_size=1, max_size=12), min_size=1, max_size=3),
)
def test_ending_when_one_key_is_left_changes_no_greedy_path_or_score(
    triples: list, seed: int, lookahead: bool, questions: list[str]
) -> None:
    """The steps it skips are forced, each worth log-prob 0 after renormalising: the same path, the same score."""
    with tempfile.TemporaryDirectory() as root:
        index = index_of_triples(triples, Path(root))
        tokenizer = build_char_tokenizer([index.alphabet, "的是什么?"])
        torch.manual_seed(seed)
        answerer = QuestionAnswerer.from_model(
            build_model(tokenizer, "tiny"), tokenizer, index, DecodeOptions(num_beams=1, lookahead=lookahead)
        )
        early = answerer.answer(questions)
        spelled_out = answerer.with_options(end_when_determined=False).answer(questions)
        for a, b in zip(early, spelled_out, strict=True):
            assert [(c.name, c.relation, c.meaning, c.object) for c in a] == [
                (c.name, c.relation, c.meaning, c.object) for c in b
            ]
            assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-5)


def _with_lookahead(constraint, lookahead: RelationLookahead, question: QuestionFacts) -> LogitsProcessorList:
    """The constraint, then the look-ahead, sharing one decoding step (as the answerer runs them)."""
    step = DecodingStep(constraint)
    return LogitsProcessorList(
        [
            KBConstraintLogitsProcessor(constraint, step),
            RelationLookaheadLogitsProcessor(lookahead, constraint, [question], step=step),
        ]
    )


def test_processor_ends_a_hypothesis_once_one_key_is_left(tiny_index: KBIndex) -> None:
    tokenizer = build_char_tokenizer([tiny_index.alphabet])
    codec = TargetCodec(tokenizer)
    constraint = codec.constraint(tiny_index)
    scores = torch.randn((1, len(tokenizer)))
    processor = KBConstraintLogitsProcessor(constraint, end_when_determined=True)
    # "守望星光|歌" leads to one key only (歌手, of one meaning): end here, at log-prob 0
    determined = codec.encode("守望星光", "歌手", "韩玉玲、刘东考演唱歌曲")[: len("守望星光") + 2]
    assert constraint.completion(determined) is not None
    out = processor(torch.tensor([[tokenizer.bos_token_id, *determined]]), scores.clone())[0]
    assert torch.nonzero(torch.isfinite(out)).flatten().tolist() == [codec.eos_token_id]
    assert out[codec.eos_token_id].item() == 0.0
    # the processor hands back the key the ended hypothesis leads to
    assert processor.completed[tuple(determined)] == path_key("守望星光", "歌手", "韩玉玲、刘东考演唱歌曲")
    # at the start of the relation several keys are ahead: exactly the plain constraint
    open_prefix = determined[:-1]
    assert constraint.completion(open_prefix) is None
    ids = torch.tensor([[tokenizer.bos_token_id, *open_prefix]])
    plain = KBConstraintLogitsProcessor(constraint)(ids, scores.clone())
    assert torch.equal(processor(ids, scores.clone()), plain)


def test_trained_tiny_model_answers_from_the_kb(tiny_model: Path, tiny_index: KBIndex) -> None:
    answerer = QuestionAnswerer.load(tiny_model, tiny_index, DecodeOptions(num_beams=3))
    questions = ["守望星光的歌手是谁？", "龙编站在哪个国家", "zzz", "？？？", "Harry Potter"]
    for candidates in answerer.answer(questions, top_k=3):
        assert candidates
        for c in candidates:
            assert c.object in tiny_index.objects(c.name, c.relation, c.meaning)


def test_no_answer_when_no_path_fits(tiny_model: Path, tiny_index: KBIndex) -> None:
    """Empty questions and hypotheses cut off before any path ends give no answer, not an exception."""
    answerer = QuestionAnswerer.load(tiny_model, tiny_index)
    assert answerer.answer(["", "   "]) == [[], []]
    cut_short = answerer.with_options(max_new_tokens=1)  # one character: no path is decided yet
    assert cut_short.answer(["守望星光的歌手是谁？"], top_k=3) == [[]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(triples=KBS, question=st.text(alphabet=NAME_CHARS + "的", max_size=10), data=st.data())
def test_lookahead_never_admits_a_forbidden_token(triples: list, question: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as root:
        index = index_of_triples(triples, Path(root))
        tokenizer = build_char_tokenizer([index.alphabet])
        codec = TargetCodec(tokenizer)
        constraint = codec.constraint(index)
        name, _, relation, _ = data.draw(st.sampled_from(triples))
        # a prefix anywhere in the name, the relation or the meaning
        full = codec.encode(name, relation, "")[:-1]
        cut = data.draw(st.integers(0, len(full)))
        target = full[:cut]
        processor = _with_lookahead(constraint, RelationLookahead(index), QuestionFacts(question, index))
        generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
        scores = torch.randn((1, len(tokenizer)), generator=generator) * 5
        input_ids = torch.tensor([[tokenizer.bos_token_id, *target]])
        out = processor(input_ids, scores.clone())
        allowed = set(constraint.allowed_token_ids(target).tolist())
        finite = set(torch.nonzero(torch.isfinite(out[0])).flatten().tolist())
        assert finite == allowed
        # still a distribution over the allowed tokens before re-weighting; re-weighting only raises them
        plain = KBConstraintLogitsProcessor(constraint)(input_ids, scores.clone())
        assert torch.logsumexp(plain[0], dim=-1).item() == pytest.approx(0.0, abs=1e-4)
        assert bool((out[0][list(allowed)] >= plain[0][list(allowed)] - 1e-6).all())


def test_lookahead_gains_follow_the_lcs_with_the_question(tiny_index: KBIndex) -> None:
    lookahead = RelationLookahead(tiny_index)
    # 守望星光's relations over all meanings: 出品公司, 歌手, 类型. The question holds 出品公司, nothing of the others.
    question = "守望星光的出品公司是哪家"
    facts = QuestionFacts(question, tiny_index)
    gains = lookahead.gains(facts, "守望星光", "")
    assert gains == {"出": 4, "歌": 0, "类": 0}
    # after "出" (LCS 1 already), the best relation through "品" gains 3 more
    assert lookahead.gains(facts, "守望星光", "出") == {"品": 3}
    # a reordered mention: LCS(出品公司, ...公司出品...) is 2
    reordered = QuestionFacts("守望星光是哪家公司出品的？", tiny_index)
    assert lookahead.gains(reordered, "守望星光", "")["出"] == 2


def test_processor_reweights_by_one_over_gain_plus_one(tiny_index: KBIndex) -> None:
    tokenizer = build_char_tokenizer([tiny_index.alphabet])
    codec = TargetCodec(tokenizer)
    constraint = codec.constraint(tiny_index)
    question = "守望星光的出品公司"
    target = codec.encode("守望星光", "出品公司", "")[: len("守望星光") + 1]  # name and the first SEP
    input_ids = torch.tensor([[tokenizer.bos_token_id, *target]])
    scores = torch.zeros((1, len(tokenizer)))
    plain = KBConstraintLogitsProcessor(constraint)(input_ids, scores.clone())[0]
    weighted = _with_lookahead(constraint, RelationLookahead(tiny_index), QuestionFacts(question, tiny_index))(
        input_ids, scores.clone()
    )[0]
    tid = codec.char_to_id
    assert weighted[tid["出"]].item() == pytest.approx(plain[tid["出"]].item() / (4 + 1))
    assert weighted[tid["歌"]].item() == pytest.approx(plain[tid["歌"]].item())
    assert np.isneginf(weighted[tid["龙"]].item())
    assert SEP not in question


def test_beam_search_keeps_searching_while_a_running_path_can_still_win(tmp_path: Path) -> None:
    """Short, unlikely paths finish first; the likely path needs more steps. Beam search must return it first
    (stopping at the first num_beams finished hypotheses would drop it)."""
    # "a" has five meanings: its beam branches into five hypotheses that finish one or two steps later
    short = [("a", meaning, "r", "x") for meaning in ["", "w", "x", "y", "z"]]
    triples = [*short, ("bbbbbbbbbb", "", "r", "4")]
    index = index_of_triples(triples, tmp_path)
    tokenizer = build_char_tokenizer([index.alphabet])
    model = build_model(tokenizer, "tiny")
    with torch.no_grad():  # a model whose logits are a fixed bias at every step: p(b) high, p(a, c, d) low
        for parameter in model.parameters():
            parameter.zero_()
        bias = torch.zeros(len(tokenizer))
        vocab = tokenizer.get_vocab()
        bias[vocab["b"]] = 5.0
        bias[tokenizer.eos_token_id] = 1.0  # ending "a|r|" ranks above its meanings
        model.final_logits_bias.copy_(bias[None, :])
    answerer = QuestionAnswerer.from_model(model, tokenizer, index, DecodeOptions(num_beams=3, lookahead=False))
    candidates = answerer.answer(["q"], top_k=3)[0]
    assert candidates[0].name == "bbbbbbbbbb"
    assert candidates[0].score > candidates[1].score
    greedy = answerer.with_options(num_beams=1).answer(["q"])[0]
    assert greedy[0].name == "bbbbbbbbbb" and greedy[0].score == pytest.approx(candidates[0].score, rel=1e-5)
