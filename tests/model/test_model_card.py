"""The default model's card (Hugging Face model-card form) agrees with the files it describes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

MODEL = Path(__file__).resolve().parents[2] / "models" / "kgqa-default"


def test_the_card_has_hugging_face_metadata_and_the_recorded_dev_figures() -> None:
    text = (MODEL / "README.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["language"] == ["zh"] and meta["license"] == "apache-2.0" and meta["datasets"] == ["KgCLUE"]
    figures = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    out_of_fold = json.loads((MODEL / "ranker.json").read_text(encoding="utf-8"))["out_of_fold"]
    [ranker] = [r for r in out_of_fold["rows"] if r["ranking"] == "learned ranker, all features"]
    assert figures["EM_O, learned ranker (out-of-fold, 5 folds disjoint in relations)"] == ranker["EM_O"]
    assert figures["F1_O, learned ranker (out-of-fold)"] == ranker["F1_O"]
    training = json.loads((MODEL / "kgqa.json").read_text(encoding="utf-8"))
    best = training["log"][-1]["dev"]
    assert f"| {best['EM_S']:.2f} | {best['EM_P']:.2f} | {best['EM_O']:.2f} |" in body  # the greedy row
    for heading in ("## Training data", "## Training procedure", "## Evaluation", "## Limitations"):
        assert heading in body
