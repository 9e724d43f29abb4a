"""The learned ranker: out-of-fold bookkeeping, save/load with refusal on mismatch, KB-only answers, features."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgqa.data import join_head, read_questions
from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.modeling import build_model
from kgqa.model.rank.features import FEATURE_GROUPS, FeatureExtractor
from kgqa.model.rank.forms import object_forms, question_kinds
from kgqa.model.rank.matcher import MatcherConfig, RelationMatcher, train_matcher
from kgqa.model.rank.ranker import (
    LearnedRanker,
    RankerMismatchError,
    RankerParams,
    fit_booster,
    model_fingerprint,
    out_of_fold_scores,
    relation_folds,
)
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.model.train.ranker_commands import fit_all
from kgqa.model.train.rankset import RankingSet, collect, is_gold
from kgqa.trie import KBIndex, build_index
from tests.conftest import write_kb

SMALL = RankerParams(rounds=20, min_data_in_leaf=1)


def _ranking_data(questions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random groups of 2-5 candidates, one gold each; feature 0 tells the gold apart (noisily)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 6, size=questions)
    labels = np.zeros(sizes.sum(), dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    labels[starts + rng.integers(0, sizes)] = 1.0
    features = rng.normal(size=(len(labels), 3)).astype(np.float32)
    features[:, 0] += 2 * labels
    return features, labels, sizes


def test_relation_folds_never_split_a_relation() -> None:
    relations = [f"r{i % 37}" for i in range(500)] + ["big"] * 120
    folds = relation_folds(relations, folds=5)
    by_relation: dict[str, set[int]] = {}
    for r, f in zip(relations, folds, strict=True):
        by_relation.setdefault(r, set()).add(int(f))
    assert all(len(fs) == 1 for fs in by_relation.values())
    counts = np.bincount(folds, minlength=5)
    assert counts.min() > 0 and counts.max() <= 1.6 * counts.mean()  # roughly balanced
    assert np.array_equal(folds, relation_folds(relations, folds=5))  # deterministic


def test_out_of_fold_scores_never_see_their_own_fold() -> None:
    """A fold's scores come from a ranker fit on the other folds only: flipping that fold's labels changes nothing."""
    features, labels, sizes = _ranking_data(200)
    folds = np.arange(200) % 4
    scores = out_of_fold_scores(features, labels, sizes, folds, SMALL)

    rows_fold = np.repeat(folds, sizes)
    flipped = labels.copy()
    flipped[rows_fold == 2] = 1.0 - flipped[rows_fold == 2]
    again = out_of_fold_scores(features, flipped, sizes, folds, SMALL)
    assert np.array_equal(scores[rows_fold == 2], again[rows_fold == 2])
    assert not np.array_equal(scores[rows_fold != 2], again[rows_fold != 2])

    # and a fold's scores are exactly those of a ranker fit on the other three folds
    train = rows_fold != 1
    booster = fit_booster(features[train], labels[train], sizes[folds != 1], SMALL)
    assert np.allclose(scores[rows_fold == 1], booster.predict(features[rows_fold == 1], num_threads=1))


def _fake_model_dir(root: Path, weights: bytes = b"weights") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.safetensors").write_bytes(weights)
    return root


def _saved_ranker(model_dir: Path, names: tuple[str, ...]) -> tuple[LearnedRanker, np.ndarray]:
    features, labels, sizes = _ranking_data(60)
    features = np.concatenate([features, np.zeros((len(features), len(names) - 3), np.float32)], axis=1)
    ranker = LearnedRanker(fit_booster(features, labels, sizes, SMALL), names, {"all": names})
    ranker.save(model_dir, {"model_sha256": model_fingerprint(model_dir), "matcher_sha256": None})
    return ranker, features


def test_ranker_round_trip_and_refusals(tmp_path: Path) -> None:
    names = ("a", "b", "c", "d")
    model_dir = _fake_model_dir(tmp_path / "model")
    ranker, features = _saved_ranker(model_dir, names)
    loaded = LearnedRanker.load(model_dir, names)
    assert np.allclose(loaded.booster.predict(features), ranker.booster.predict(features))

    with pytest.raises(RankerMismatchError, match="other features"):
        LearnedRanker.load(model_dir, ("a", "b", "c", "e"))
    with pytest.raises(RankerMismatchError, match="matcher"):
        (model_dir / "matcher.safetensors").write_bytes(b"m")
        LearnedRanker.load(model_dir, names, model_dir / "matcher.safetensors")
    with pytest.raises(RankerMismatchError, match="other lexicon features"):
        (model_dir / "lexicon.json").write_text("{}", encoding="utf-8")
        LearnedRanker.load(model_dir, names, lexicon_file=model_dir / "lexicon.json")
    (model_dir / "model.safetensors").write_bytes(b"retrained weights")
    with pytest.raises(RankerMismatchError, match=r"another model.*kgqa ranker fit"):
        LearnedRanker.load(model_dir, names)
    (model_dir / "ranker.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RankerMismatchError, match=r"cannot read ranker\.json"):
        LearnedRanker.load(model_dir, names)


def test_rank_orders_by_score_and_explains_by_group(tmp_path: Path) -> None:
    """One batch of three questions (one with no candidate): each is ordered and cut as if ranked alone."""
    names = ("a", "b", "c", "d")
    model_dir = _fake_model_dir(tmp_path / "model")
    ranker, features = _saved_ranker(model_dir, names)
    first = [Candidate(f"n{i}", "r", "", "o", 0.0) for i in range(5)]
    second = [Candidate(f"m{i}", "r", "", "o", 0.0) for i in range(4)]
    rows = [features[:5], np.zeros((0, len(names)), dtype=np.float32), features[5:9]]
    ranked = ranker.rank([first, [], second], rows, [3, 2, 2], contributions=True)
    assert [len(r) for r in ranked] == [3, 0, 2]
    for own, prefix, block, k in ((ranked[0], "n", features[:5], 3), (ranked[2], "m", features[5:9], 2)):
        expected = np.argsort(-ranker.booster.predict(block), kind="stable")[:k]
        assert [c.name for c in own] == [f"{prefix}{i}" for i in expected]
        for c in own:
            (group, value), *_ = c.contributions
            assert group == "all"
            # contributions add up to the score, less LightGBM's constant (bias) term
            bias = ranker.booster.predict(features[:1], pred_contrib=True)[0, -1]
            assert value + bias == pytest.approx(c.score, abs=1e-3)
    plain = ranker.rank([first, [], second], rows, [3, 2, 2])
    assert [[c.name for c in r] for r in plain] == [[c.name for c in r] for r in ranked]
    assert all(c.contributions == () for r in plain for c in r)  # not asked for: not computed


FEATURE_KB = [
    "阿克拉（加纳首都）\t人口\t227万",
    "阿克拉（加纳首都）\t成立时间\t1877年",
    "阿克拉（图书）\t作者\t张三",
    "阿克拉\t类型\t城市",
    "克拉\t单位\t质量单位",
]


def test_features_on_a_hand_made_kb(tmp_path: Path) -> None:
    build_index([write_kb(tmp_path / "kb.tsv", FEATURE_KB)], tmp_path / "index", progress=False)
    index = KBIndex(tmp_path / "index")
    extractor = FeatureExtractor(index)
    question = "阿克拉是什么时候成立的？"
    candidates = [
        Candidate("阿克拉", "成立时间", "加纳首都", "1877年", -0.5, log_probability=-0.5, beam_rank=0),
        Candidate("阿克拉", "人口", "加纳首都", "227万", -1.5, log_probability=-1.5, beam_rank=1),
        Candidate("克拉", "单位", "", "质量单位", -3.0, log_probability=-3.0),
    ]
    rows = extractor.rows_many([QuestionFacts(question, index)], [candidates])[0]
    assert rows.shape == (3, len(extractor.names)) and np.isfinite(rows).all()
    f = {name: rows[:, i] for i, name in enumerate(extractor.names)}
    assert list(f["log_prob_gap"]) == [0.0, -1.0, -2.5]
    assert list(f["in_beam"]) == [1.0, 1.0, 0.0] and f["beam_rank"][2] == 20
    assert f["relation_lcs_rest_share"][0] > f["relation_lcs_rest_share"][1]  # 成立 is in the question
    assert f["asks_when"][0] == 1.0 and f["object_when"][0] == 1.0 and f["fits_when"][0] == 1.0
    assert f["fits_when"][1] == 0.0
    assert f["entities_of_name"][0] == 3.0  # 阿克拉: 加纳首都, 图书 and the bare name
    assert f["entities_with_relation"][0] == 1.0
    assert list(f["name_is_longest"]) == [1.0, 1.0, 0.0]  # 阿克拉 is the longest KB name in the question
    assert f["names_in_question"][0] == 2.0  # 阿克拉 and 克拉
    assert set(FEATURE_GROUPS) <= set(extractor.groups) and "match" not in extractor.groups
    assert object_forms("《固体物理》")["title"] == 1.0 and question_kinds("他是谁")["who"] == 1.0


NAME_CHARS = "ab龙星光x"
WORD = st.text(alphabet=NAME_CHARS, min_size=1, max_size=4)
TRIPLE = st.tuples(WORD, st.one_of(st.just(""), WORD), WORD, WORD)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    triples=st.lists(TRIPLE, min_size=1, max_size=10),
    seed=st.integers(0, 2**16),
    anchor_names=st.integers(0, 2),
    top_k=st.integers(1, 4),
    questions=st.lists(st.text(alphabet=NAME_CHARS + "的是什么?", min_size=1, max_size=12), min_size=1, max_size=3),
)
def test_learned_ranker_answers_only_kb_paths(
    triples: list, seed: int, anchor_names: int, top_k: int, questions: list[str]
) -> None:
    """Random model, random KB, a ranker fit on its own candidates: every answer is still a triple of the KB."""
    with tempfile.TemporaryDirectory() as root:
        lines = [f"{join_head(n, m)}\t{r}\t{o}" for n, m, r, o in triples]
        build_index([write_kb(Path(root) / "kb.tsv", lines)], Path(root) / "index", progress=False)
        index = KBIndex(Path(root) / "index")
        tokenizer = build_char_tokenizer([index.alphabet, "的是什么?"])
        torch.manual_seed(seed)
        options = DecodeOptions(num_beams=2, anchor_names=anchor_names, anchor_paths=4)
        answerer = QuestionAnswerer.from_model(build_model(tokenizer, "tiny"), tokenizer, index, options)
        proposed = answerer.propose(questions)
        extractor = answerer.features
        facts = [answerer.facts(q) for q in questions]
        rows = [r for r, c in zip(extractor.rows_many(facts, proposed), proposed, strict=True) if c]
        assert rows, "no question got a candidate: there would be nothing to check"
        features = np.concatenate(rows)
        sizes = np.array([len(c) for c in proposed if c])
        labels = np.zeros(len(features), dtype=np.float32)
        labels[np.concatenate([[0], np.cumsum(sizes)[:-1]])] = 1.0
        answerer.ranker = LearnedRanker(fit_booster(features, labels, sizes, SMALL), extractor.names, {})
        kb = {(n, r, m, o) for n, m, r, o in triples}
        checked = 0
        for question, candidates in zip(questions, answerer.answer(questions, top_k=top_k), strict=True):
            assert len(candidates) <= top_k
            assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
            for c in candidates:
                assert (c.name, c.relation, c.meaning, c.object) in kb, (question, c)
                checked += 1
        assert checked > 0


def test_fit_save_load_and_answer_with_the_tiny_model(tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path) -> None:
    """The whole path on the tiny model: collect, fit, save beside the model, load by default, answer by it."""
    with tempfile.TemporaryDirectory() as root:
        model_dir = Path(root) / "model"
        shutil.copytree(tiny_model, model_dir)
        questions = read_questions(tiny_qa)
        options = DecodeOptions(num_beams=3, anchor_names=1, anchor_paths=4, use_ranker=False)
        ranking = collect(QuestionAnswerer.load(model_dir, tiny_index, options), questions, progress=False)
        assert ranking.features.shape == (int(ranking.sizes.sum()), len(ranking.feature_names))
        assert ranking.labels.sum() == sum(
            any(is_gold(c, q.answer) for c in cs) for q, cs in zip(questions, ranking.candidates, strict=True)
        )
        ranking.save(Path(root) / "set")
        again = RankingSet.load(Path(root) / "set")
        assert again.candidates == ranking.candidates and np.array_equal(again.features, ranking.features)

        ranker = fit_all(ranking, SMALL)
        ranker.save(model_dir, {"model_sha256": model_fingerprint(model_dir), "matcher_sha256": None})
        answerer = QuestionAnswerer.load(model_dir, tiny_index, DecodeOptions(num_beams=3, anchor_names=1))
        assert answerer.ranker is not None
        answers = answerer.answer([q.question for q in questions], top_k=2, explain=True)
        assert any(answers)
        for candidates in answers:
            assert all(c.contributions for c in candidates)
        unexplained = answerer.answer([q.question for q in questions], top_k=2)
        assert [[c.name for c in cs] for cs in unexplained] == [[c.name for c in cs] for cs in answers]
        assert not any(c.contributions for cs in unexplained for c in cs)  # computed only where shown
        plain = QuestionAnswerer.load(model_dir, tiny_index, DecodeOptions(num_beams=3, use_ranker=False))
        assert plain.ranker is None


def test_matcher_trains_saves_and_loads(tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path) -> None:
    config = MatcherConfig(dim=32, layers=1, heads=2, ffn=64, epochs=2, batch_groups=4, object_chars=8)
    matcher, info = train_matcher(read_questions(tiny_qa), tiny_index, config, progress=False)
    assert len(info["log"]) == 2 and all(np.isfinite(e["loss"]) for e in info["log"])
    matcher.save(tmp_path, info)
    loaded = RelationMatcher.load(tmp_path)
    paths = [
        ("守望星光", "出品公司", "韩玉玲、刘东考演唱歌曲", "韩玉玲原创音乐"),
        ("守望星光", "歌手", "韩玉玲、刘东考演唱歌曲", "韩玉玲"),
    ]
    assert np.allclose(
        loaded.scores("守望星光是哪家公司出品的", paths), matcher.scores("守望星光是哪家公司出品的", paths)
    )
    extractor = FeatureExtractor(tiny_index, loaded)
    assert extractor.names[-3:] == ("match", "match_gap", "match_rank")


def test_anchored_candidates_score_the_same_alone_and_in_a_batch(tiny_model: Path, tiny_index: KBIndex) -> None:
    """A question's candidates do not depend on the questions decoded with it (generate expands the encoder output
    in place to one row per beam; the anchored paths must still be scored with their own question's)."""
    options = DecodeOptions(num_beams=3, anchor_names=1, anchor_paths=8, use_ranker=False)
    answerer = QuestionAnswerer.load(tiny_model, tiny_index, options)
    questions = ["你知道守望星光是哪家公司出品的吗？", "龙编站的所属国家是哪里", "刘晓华主要讲什么课啊？", "守望的拼音"]
    together = answerer.propose(questions)
    assert any(c.beam_rank is None for candidates in together for c in candidates)  # some anchored ones
    for question, batch in zip(questions, together, strict=True):
        (alone,) = answerer.propose([question])
        assert [(c.subject, c.relation) for c in alone] == [(c.subject, c.relation) for c in batch]
        assert [c.log_probability for c in alone] == pytest.approx([c.log_probability for c in batch], abs=1e-4)
