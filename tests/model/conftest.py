from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgqa.trie import KBIndex, build_index
from tests.conftest import TINY_KB, write_kb

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
    from kgqa.model.train import TrainConfig, train

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
