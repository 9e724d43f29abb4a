"""The learned ranker: LightGBM lambdarank over each question's candidate paths.

It replaces the log-probability (plus two hand-set bonuses) as what orders the candidates. Its input is the rows of
``kgqa.model.rank.features`` — how a path fits the question, never which path it is — so it transfers to relations it
never saw. It is fit on dev questions (train questions are what the seq2seq model learned; its candidates there are too
good to teach a ranker what errors look like); dev figures are therefore out-of-fold, over folds disjoint in relations,
so no question is ranked by a ranker that saw its relation.

The shipped ranker (fit on all of dev) lives beside the model it ranks for: ``ranker.txt`` (LightGBM's text format) and
``ranker.json`` (format version, feature names, the model's fingerprint, how it was fit). A ranker fit for another
model, another feature set or format is refused with a message that says how to refit.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from kgqa.data.report import read_versioned_json, sha256_file
from kgqa.model.candidate import Candidate
from kgqa.model.rank.confidence import ConfidenceModel, Pressure

RANKER_FILE = "ranker.txt"
RANKER_INFO = "ranker.json"
RANKER_FORMAT = 1
MODEL_WEIGHTS = "model.safetensors"


class RankerMismatchError(ValueError):
    """The ranker in a model directory cannot rank for this model or these features."""


@dataclass(frozen=True)
class RankerParams:
    """Chosen by out-of-fold dev EM_O (docs/evaluation.md); small trees and a strong L2, as 2,000 questions are few."""

    learning_rate: float = 0.05
    num_leaves: int = 7
    min_data_in_leaf: int = 20
    lambda_l2: float = 10.0
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    rounds: int = 300
    truncation_level: int = 10
    seed: int = 0

    def lightgbm(self) -> dict[str, Any]:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "ndcg_eval_at": [1],
            "lambdarank_truncation_level": self.truncation_level,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "lambda_l2": self.lambda_l2,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,  # deterministic, and the service's threads are spoken for
            "verbose": -1,
        }


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 of the model's weights: a ranker is fit to one model's scores."""
    return sha256_file(Path(model_dir) / MODEL_WEIGHTS)


def fit_booster(features: np.ndarray, labels: np.ndarray, sizes: Sequence[int], params: RankerParams) -> lgb.Booster:
    """A lambdarank booster over questions' candidate groups (``sizes``: candidates per question, in order)."""
    data = lgb.Dataset(features, labels, group=list(sizes), free_raw_data=False)
    settings = params.lightgbm()
    if len(sizes) < 20:  # bagging samples whole questions: with a handful it could draw none
        settings |= {"bagging_fraction": 1.0, "bagging_freq": 0}
    return lgb.train(settings, data, num_boost_round=params.rounds)


def relation_folds(relations: Sequence[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """A fold per question such that no relation is in two folds (greedy: largest relations first, smallest fold)."""
    counts: dict[str, int] = {}
    for r in relations:
        counts[r] = counts.get(r, 0) + 1
    names = sorted(counts)
    random.Random(seed).shuffle(names)  # ties broken at random, not alphabetically
    sizes = [0] * folds
    fold_of: dict[str, int] = {}
    for r in sorted(names, key=lambda r: -counts[r]):
        f = min(range(folds), key=lambda i: sizes[i])
        fold_of[r] = f
        sizes[f] += counts[r]
    return np.array([fold_of[r] for r in relations], dtype=np.int64)


class LearnedRanker:
    """Scores candidates from their feature rows; the best first."""

    def __init__(
        self,
        booster: lgb.Booster,
        feature_names: Sequence[str],
        groups: dict[str, Sequence[str]],
        confidence: ConfidenceModel | None = None,
    ) -> None:
        self.booster = booster
        self.confidence = confidence  # the top answer's calibrated confidence, where the model directory has one
        self.feature_names = tuple(feature_names)
        self.groups = {g: tuple(names) for g, names in groups.items()}
        self._group_columns = {
            g: [self.feature_names.index(n) for n in names if n in self.feature_names] for g, names in groups.items()
        }

    def rank(
        self,
        candidates: Sequence[Sequence[Candidate]],
        features: Sequence[np.ndarray],
        top_ks: Sequence[int],
        contributions: bool = False,
        pressure: Pressure | None = None,
        confidence: bool = True,
    ) -> list[list[Candidate]]:
        """Each question's best ``top_k`` candidates, re-scored by the ranker: one prediction over the whole batch.

        ``contributions``: also what each feature group added to each kept candidate's score (for the page, ``kgqa
        ask`` and the API; a second pass over the kept rows only). With a confidence model (and ``confidence``), each
        question's top candidate carries its confidence (``pressure``: what it reads of the top candidates' paths, see
        ``kgqa.model.decode.pressure``).
        """
        sizes = [len(c) for c in candidates]
        if not any(sizes):
            return [[] for _ in candidates]
        rows = np.concatenate([f for f in features if len(f)])
        scores = self.booster.predict(rows, num_threads=1)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        orders = [
            np.argsort(-scores[start : start + size], kind="stable")[:k]
            for start, size, k in zip(starts, sizes, top_ks, strict=True)
        ]
        by_group: list[tuple[tuple[str, float], ...]] = []
        if contributions:
            kept = np.concatenate([start + order for start, order in zip(starts, orders, strict=True)])
            if len(kept):
                contrib = self.booster.predict(rows[kept], pred_contrib=True, num_threads=1)
                by_group = [
                    tuple((g, round(float(row[cols].sum()), 4)) for g, cols in self._group_columns.items())
                    for row in contrib
                ]
        confidences = (
            self.confidence.of_questions(rows, scores, candidates, pressure)
            if self.confidence is not None and confidence
            else [None] * len(candidates)
        )
        ranked, row = [], 0
        for own, start, order, confidence in zip(candidates, starts, orders, confidences, strict=True):
            kept_own = []
            for place, i in enumerate(order):
                extra: dict[str, Any] = {"contributions": by_group[row]} if contributions else {}
                if place == 0:
                    extra["confidence"] = confidence
                kept_own.append(replace(own[i], score=float(scores[start + i]), **extra))
                row += 1
            ranked.append(kept_own)
        return ranked

    def save(self, directory: str | Path, info: dict[str, Any]) -> None:
        directory = Path(directory)
        self.booster.save_model(str(directory / RANKER_FILE))
        meta = {"format": RANKER_FORMAT, "features": list(self.feature_names), "groups": self.groups} | info
        (directory / RANKER_INFO).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @staticmethod
    def present(directory: str | Path) -> bool:
        return (Path(directory) / RANKER_INFO).is_file()

    @staticmethod
    def fit_with(directory: str | Path) -> set[str]:
        """The feature files the ranker of a model directory was fit with ("words", "lexicon" …: those whose sha256
        its ``ranker.json`` records); empty when there is no readable ``ranker.json`` (``load`` then says what is
        wrong)."""
        meta = _info(directory)
        return {key.removesuffix("_sha256") for key, value in meta.items() if key.endswith("_sha256") and value}

    @staticmethod
    def feature_names_of(directory: str | Path) -> tuple[str, ...]:
        """The feature columns the ranker of a model directory was fit on (empty without a readable ranker.json)."""
        return tuple(_info(directory).get("features", ()))

    @classmethod
    def load(
        cls,
        directory: str | Path,
        feature_names: Sequence[str],
        matcher_file: str | Path | None = None,
        lexicon_file: str | Path | None = None,
        words_file: str | Path | None = None,
        neighbours_file: str | Path | None = None,
    ) -> LearnedRanker:
        """The ranker of a model directory; RankerMismatchError when it was fit for another model, matcher, lexicon,
        word files or features.

        ``matcher_file``, ``lexicon_file``, ``words_file`` (the word manifest), ``neighbours_file``: the files behind
        features, where the features include them.
        """
        directory = Path(directory)
        refit = f"refit it with `kgqa ranker fit --model {directory.name}` (or pass --no-ranker)"
        meta = read_versioned_json(directory / RANKER_INFO, RANKER_FORMAT, RankerMismatchError, refit)
        fingerprint = model_fingerprint(directory)
        if meta.get("model_sha256") != fingerprint:
            raise RankerMismatchError(
                f"the ranker in {directory.name} was fit for another model (weights sha256 "
                f"{str(meta.get('model_sha256'))[:12]}…, these are {fingerprint[:12]}…); {refit}"
            )
        scorers = (
            ("relation matcher", "matcher", matcher_file),
            ("lexicon", "lexicon", lexicon_file),
            ("word files", "words", words_file),
            ("training neighbours", "neighbours", neighbours_file),
        )
        for what, key, file in scorers:
            found = sha256_file(file) if file is not None else None
            if meta.get(f"{key}_sha256") != found:
                raise RankerMismatchError(
                    f"the ranker in {directory.name} was fit with "
                    + (f"another {what}" if meta.get(f"{key}_sha256") and found else f"other {key} features")
                    + f" than the one beside it; {refit}"
                )
        if tuple(meta.get("features", ())) != tuple(feature_names):
            raise RankerMismatchError(
                f"the ranker in {directory.name} was fit on other features "
                f"({len(meta.get('features', ()))} columns, this kgqa computes {len(feature_names)}); {refit}"
            )
        try:
            booster = lgb.Booster(model_file=str(directory / RANKER_FILE))
        except lgb.basic.LightGBMError as exc:
            raise RankerMismatchError(f"cannot read {RANKER_FILE} in {directory.name}: {exc}; {refit}") from exc
        if booster.num_feature() != len(feature_names):
            raise RankerMismatchError(
                f"{RANKER_FILE} in {directory.name} takes {booster.num_feature()} features, "
                f"{RANKER_INFO} lists {len(feature_names)}; {refit}"
            )
        return cls(booster, feature_names, meta.get("groups", {}))


def _info(directory: str | Path) -> dict[str, Any]:
    """A model directory's ``ranker.json`` as it is, or {} when it cannot be read (``load`` says why)."""
    try:
        meta = json.loads((Path(directory) / RANKER_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def questions_with_gold(labels: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Which questions have the gold path among their candidates: the others teach a ranker nothing."""
    golds = np.bincount(np.repeat(np.arange(len(sizes)), sizes), weights=labels, minlength=len(sizes))
    return golds > 0


def out_of_fold_scores(
    features: np.ndarray,
    labels: np.ndarray,
    sizes: np.ndarray,
    folds: np.ndarray,
    params: RankerParams,
) -> np.ndarray:
    """Each candidate's score from a ranker fit on the other folds' questions (``folds``: one per question)."""
    rows_fold = np.repeat(folds, sizes)
    with_gold = questions_with_gold(labels, sizes)
    scores = np.zeros(len(labels), dtype=np.float64)
    for f in np.unique(folds):
        keep_q = (folds != f) & with_gold
        keep_rows = np.repeat(keep_q, sizes)
        booster = fit_booster(features[keep_rows], labels[keep_rows], sizes[keep_q], params)
        scores[rows_fold == f] = booster.predict(features[rows_fold == f], num_threads=1)
    return scores
