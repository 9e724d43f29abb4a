from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgqa.data.locate import DataNotFoundError, find_data_dir, knowledge_file
from kgqa.trie import KBIndex, build_index


@pytest.fixture(scope="session")
def kgclue_dir() -> Path:
    """The real KgCLUE files, found as the product finds them (never copied into the repo)."""
    try:
        return find_data_dir(download=False)
    except DataNotFoundError as exc:
        pytest.skip(f"KgCLUE data not available: {exc}")


@pytest.fixture(scope="session")
def kgclue_kb(kgclue_dir: Path) -> Path:
    kb = knowledge_file(kgclue_dir)
    if kb is None:
        pytest.skip(f"no KgCLUE-sim knowledge file in {kgclue_dir}")
    return kb


# The small KB of the unit tests: homonyms (守望星光 with two meanings and none), a name that prefixes another (守望),
# several relations per entity, an entity with an empty meaning (龙编站), Latin text.
TINY_KB = [
    "守望星光（韩玉玲、刘东考演唱歌曲）\t出品公司\t韩玉玲原创音乐",
    "守望星光（韩玉玲、刘东考演唱歌曲）\t歌手\t韩玉玲",
    "守望星光（2002年电视剧人物）\t出品公司\t另一家公司",
    "守望星光\t类型\t歌曲",
    "守望\t拼音\tshǒu wàng",
    "龙晶（游戏）\t繁体\t龍晶",
    "龙晶（游戏）\t别名\t龙之晶",
    "龙编站\t坐标\t21°2′22.9″N105°51′1.1″E",
    "龙编站\t所属国家\t越南",
    "刘晓华（广东工业大学教授）\t主讲课程\t《固体物理》",
    "刘晓华（歌手）\t代表作品\t晓华之歌",
    "Harry Potter\t作者\tJ. K. Rowling",
]


def write_kb(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


TINY_QA = [
    ("你知道守望星光是哪家公司出品的吗？", "守望星光（韩玉玲、刘东考演唱歌曲） ||| 出品公司 ||| 韩玉玲原创音乐"),
    ("守望星光的歌手是谁？", "守望星光（韩玉玲、刘东考演唱歌曲） ||| 歌手 ||| 韩玉玲"),
    ("你知道龙晶用繁体字怎么写吗？", "龙晶（游戏） ||| 繁体 ||| 龍晶"),
    ("我很好奇龙编站的坐标是什么啊？", "龙编站 ||| 坐标 ||| 21°2′22.9″N105°51′1.1″E"),
    ("龙编站的所属国家是哪里", "龙编站 ||| 所属国家 ||| 越南"),
    ("刘晓华主要讲什么课啊？", "刘晓华（广东工业大学教授） ||| 主讲课程 ||| 《固体物理》"),
    ("Harry Potter的作者是谁？", "Harry Potter ||| 作者 ||| J. K. Rowling"),
    ("守望的拼音是什么", "守望 ||| 拼音 ||| shǒu wàng"),
]


def write_qa(path: Path, pairs: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, (question, answer) in enumerate(pairs):
            f.write(json.dumps({"id": i, "question": question, "answer": answer}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> KBIndex:
    root = tmp_path_factory.mktemp("tiny-index")
    build_index([write_kb(root / "kb.tsv", TINY_KB)], root / "index", progress=False)
    return KBIndex(root / "index")


@pytest.fixture(scope="session")
def tiny_qa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qa(tmp_path_factory.mktemp("tiny-qa") / "qa.json", TINY_QA)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_index: KBIndex, tiny_qa: Path) -> Path:
    """A tiny model trained a few steps on the tiny KB (real training loop, augmentation, dev evaluation)."""
    from kgqa.model.train.config import TrainConfig
    from kgqa.model.train.trainer import train

    out = tmp_path_factory.mktemp("tiny-model") / "model"
    config = TrainConfig(
        train_file=str(tiny_qa),
        dev_file=str(tiny_qa),
        index_dir=str(tiny_index.directory),
        out_dir=str(out),
        size="tiny",
        epochs=2,
        batch_size=8,
        max_minutes=None,
        patience=5,
    )
    train(config, progress=False)
    return out


def index_of_triples(triples: list[tuple[str, str, str, str]], root: Path) -> KBIndex:
    """The index of ``(name, meaning, relation, object)`` tuples, built under ``root``."""
    from kgqa.data import join_head

    return index_of_lines([f"{join_head(n, m)}\t{relation}\t{obj}" for n, m, relation, obj in triples], root)


def index_of_lines(lines: list[str], root: Path) -> KBIndex:
    """The index of knowledge-file ``lines``, built under ``root`` (created)."""
    from kgqa.trie import build_index

    root.mkdir(parents=True, exist_ok=True)
    build_index([write_kb(root / "kb.tsv", lines)], root / "index", progress=False)
    return KBIndex(root / "index")


# Homonyms of two kinds (villages, a film) holding one relation, for the KB statistics and the features read from them
VILLAGES_AND_A_FILM = [
    "三里村（湖南省长沙市村庄）\t面积\t3平方公里",
    "五里村（湖南省岳阳市村庄）\t面积\t5平方公里",
    "五里村（湖南省岳阳市村庄）\t人口\t800人",
    "五里村（2010年电影）\t导演\t张三",
    "五里村（2010年电影）\t面积\t不详",
]


def save_word_piece_checkpoint(directory: Path, words: list[str]) -> Path:
    """A real (untrained) seq2seq checkpoint with a word-piece tokenizer over ``words``: one kgqa cannot extend."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from kgqa.model.modeling import build_model, save_checkpoint

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[SEP]", "[CLS]", *words])}
    core = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", sep_token="[SEP]", eos_token="[SEP]"
    )
    save_checkpoint(build_model(tokenizer, "tiny"), tokenizer, directory, {})
    return directory


@pytest.fixture(scope="session")
def kgclue_sim_index(kgclue_kb: Path, tmp_path_factory: pytest.TempPathFactory) -> KBIndex:
    """The index of the KgCLUE-sim KB, built once per test session (about 30 s)."""
    from kgqa.trie import build_index

    directory = tmp_path_factory.mktemp("sim") / "index"
    build_index([kgclue_kb], directory, progress=False)
    return KBIndex(directory)
