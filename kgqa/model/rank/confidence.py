"""The answer's confidence: the probability that a question's top answer is right, calibrated, and what abstention
compares with a threshold.

Its input is one row per question, built from the ranked candidates (``question_rows``): the top candidate's ranker
features (how name, relation and meaning fit the question), the ranker's score, its margin to the next candidate and
to the best candidate of another name or of the same name with another relation, the top candidate's share of the
ranker's softmax, and how hard the KB constraint pushed the model along the top path (``PRESSURE_COLUMNS``, one more
decoder pass). A LightGBM binary classifier maps it to a probability; Platt scaling, fit on its out-of-fold outputs,
calibrates it. A screen, the same without the pressure columns, answers first: only the questions it is unsure of
pay for the decoder pass. Both are fit on a mix of answerable and unanswerable questions made from dev and the KB
itself (``kgqa data unanswerable``), with ranker scores that are out-of-fold, as they are on questions the ranker
never saw.

Files, beside the ranker they were fit for: ``confidence.txt`` and ``confidence_screen.txt`` (LightGBM) and
``confidence.json`` (format, columns, Platt's numbers, the screen's band, the default threshold, the ranker's
sha256, the out-of-fold report). A confidence fit for another ranker is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from kgqa.data.report import read_versioned_json, sha256_file
from kgqa.model.candidate import Candidate
from kgqa.model.decode.pressure import PRESSURE_COLUMNS

CONFIDENCE_FILE = "confidence.txt"
SCREEN_FILE = "confidence_screen.txt"
# the screen's confidences between which the pressure pass is paid for (outside, the screen's confidence stands)
SCREEN_BAND = (0.05, 0.95)
CONFIDENCE_INFO = "confidence.json"
CONFIDENCE_FORMAT = 1
SCORE_COLUMNS = ("score", "score_gap", "score_share", "candidates", "gap_other_name", "gap_same_name")
NO_RIVAL = 10.0  # the margin to a rival that does not exist: far above any real one
# (question places in the batch, their top candidates) -> one row of PRESSURE_COLUMNS each
Pressure = Callable[[Sequence[int], Sequence[Candidate]], np.ndarray]


class ConfidenceMismatchError(ValueError):
    """The confidence model in a model directory cannot score this ranker's answers."""


@dataclass(frozen=True)
class ConfidenceParams:
    learning_rate: float = 0.05
    num_leaves: int = 7
    min_data_in_leaf: int = 20
    lambda_l2: float = 10.0
    feature_fraction: float = 0.8
    rounds: int = 200
    seed: int = 0

    def lightgbm(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "lambda_l2": self.lambda_l2,
            "feature_fraction": self.feature_fraction,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,
            "verbose": -1,
        }


def confidence_columns(ranker_features: Sequence[str], pressure: bool = True) -> tuple[str, ...]:
    return tuple(f"top_{name}" for name in ranker_features) + SCORE_COLUMNS + (PRESSURE_COLUMNS if pressure else ())


def question_row(features: np.ndarray, scores: np.ndarray, candidates: Sequence[Candidate]) -> tuple[np.ndarray, int]:
    """The confidence's input for one question with candidates (its rows of ranker features and ranker scores), less
    the pressure columns; and which candidate is its top one."""
    best = int(np.argmax(scores))
    top = scores[best]
    others = np.delete(scores, best)
    shifted = np.exp(scores - top)
    name, relation = candidates[best].name, candidates[best].relation
    other_name = [s for c, s in zip(candidates, scores, strict=True) if c.name != name]
    same_name = [s for c, s in zip(candidates, scores, strict=True) if c.name == name and c.relation != relation]
    extra = [
        top,
        top - others.max() if len(others) else NO_RIVAL,
        1.0 / shifted.sum(),
        float(len(candidates)),
        top - max(other_name) if other_name else NO_RIVAL,
        top - max(same_name) if same_name else NO_RIVAL,
    ]
    return np.concatenate([features[best], np.asarray(extra, dtype=np.float32)]).astype(np.float32), best


def question_rows(
    features: np.ndarray,
    scores: np.ndarray,
    candidates: Sequence[Sequence[Candidate]],
    pressure: Pressure | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Candidate]]:
    """Rows for every question that has candidates (``features``, ``scores``: all their candidates' rows, questions
    in order), the mask of those questions, and their top candidates. ``pressure`` (question places, their top
    candidates) -> ``PRESSURE_COLUMNS`` rows: appended when given."""
    sizes = np.array([len(c) for c in candidates], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rows, tops, places = [], [], []
    for place, (start, size, own) in enumerate(zip(starts, sizes, candidates, strict=True)):
        if size:
            row, best = question_row(features[start : start + size], scores[start : start + size], own)
            rows.append(row)
            tops.append(own[best])
            places.append(place)
    width = features.shape[1] + len(SCORE_COLUMNS)
    out = np.stack(rows) if rows else np.zeros((0, width), dtype=np.float32)
    if pressure is not None:
        out = np.concatenate([out, pressure(places, tops).astype(np.float32)], axis=1)
    return out, sizes > 0, tops


def unsure_of(screened: np.ndarray, band: tuple[float, float] = SCREEN_BAND) -> np.ndarray:
    """Which of the screen's confidences fall inside ``band``: those questions get the pressure pass."""
    return (screened > band[0]) & (screened < band[1])


def fit_booster(rows: np.ndarray, right: np.ndarray, params: ConfidenceParams) -> lgb.Booster:
    return lgb.train(params.lightgbm(), lgb.Dataset(rows, right.astype(np.float64)), num_boost_round=params.rounds)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_platt(raw: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a·logit(raw) + b), by maximum likelihood."""
    from scipy.optimize import minimize

    x, y = logit(raw), right.astype(np.float64)

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * x + ab[1]
        p = 1 / (1 + np.exp(-z))
        # log(1 + e^z) - y·z, summed: the negative log-likelihood, stable for large |z|
        value = float((np.logaddexp(0, z) - y * z).sum())
        return value, np.array([((p - y) * x).sum(), (p - y).sum()])

    found = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(found.x[0]), float(found.x[1])


def platt(raw: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(a * logit(raw) + b)))


@dataclass(frozen=True)
class Calibrated:
    """A LightGBM classifier and the two Platt numbers that calibrate its output."""

    booster: lgb.Booster
    calibration: tuple[float, float]

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0, dtype=np.float64)
        return platt(self.booster.predict(rows, num_threads=1), *self.calibration)


class ConfidenceModel:
    """The probability that each question's top answer is right, and the threshold below which kgqa abstains.

    With the pressure columns, a *screen* (the same classifier without them) answers first; only questions it places
    inside ``band`` (neither clearly right nor clearly not) pay for the pressure pass and get the full model's
    confidence. Out-of-fold the two decide alike at every threshold from 0.2 to 0.3 (docs/evaluation.md).
    """

    def __init__(
        self,
        full: Calibrated,
        columns: Sequence[str],
        threshold: float,
        screen: Calibrated | None = None,
        band: tuple[float, float] = SCREEN_BAND,
    ) -> None:
        self.full = full
        self.columns = tuple(columns)
        self.threshold = threshold
        self.screen = screen
        self.band = band
        if self.uses_pressure and screen is None:
            raise ValueError("a confidence with the pressure columns needs its screen")

    @property
    def uses_pressure(self) -> bool:
        return self.columns[-len(PRESSURE_COLUMNS) :] == PRESSURE_COLUMNS

    def of_questions(
        self,
        features: np.ndarray,
        scores: np.ndarray,
        candidates: Sequence[Sequence[Candidate]],
        pressure: Pressure | None = None,
    ) -> list[float | None]:
        """Each question's confidence in its top candidate (None for a question with no candidate). ``pressure``:
        the top candidates' ``PRESSURE_COLUMNS``, asked for those inside the screen's band (ValueError without,
        where the confidence was fit with them)."""
        if self.uses_pressure and pressure is None:
            raise ValueError("this confidence reads the constraint's pressure on the top path: pass pressure")
        rows, has, tops = question_rows(features, scores, candidates)
        if self.screen is None:
            confidence = self.full.predict(rows)
        else:
            assert pressure is not None
            confidence = self.screen.predict(rows)
            unsure = np.flatnonzero(unsure_of(confidence, self.band))
            if len(unsure):
                places = np.flatnonzero(has)[unsure].tolist()
                pressed = pressure(places, [tops[i] for i in unsure]).astype(np.float32)
                confidence[unsure] = self.full.predict(np.concatenate([rows[unsure], pressed], axis=1))
        found = iter(confidence.tolist())
        return [next(found) if h else None for h in has]

    def save(self, directory: str | Path, info: dict[str, Any]) -> None:
        directory = Path(directory)
        self.full.booster.save_model(str(directory / CONFIDENCE_FILE))
        meta: dict[str, Any] = {
            "format": CONFIDENCE_FORMAT,
            "columns": list(self.columns),
            "calibration": {"method": "platt", "a": self.full.calibration[0], "b": self.full.calibration[1]},
            "threshold": self.threshold,
        }
        if self.screen is not None:
            self.screen.booster.save_model(str(directory / SCREEN_FILE))
            a, b = self.screen.calibration
            meta["screen"] = {"file": SCREEN_FILE, "calibration": {"a": a, "b": b}, "band": list(self.band)}
        (directory / CONFIDENCE_INFO).write_text(json.dumps(meta | info, ensure_ascii=False, indent=1) + "\n", "utf-8")

    @staticmethod
    def present(directory: str | Path) -> bool:
        return (Path(directory) / CONFIDENCE_INFO).is_file()

    @staticmethod
    def threshold_of(directory: str | Path) -> float | None:
        """The default threshold of a model directory's confidence (None without a readable one)."""
        try:
            return float(json.loads((Path(directory) / CONFIDENCE_INFO).read_text(encoding="utf-8"))["threshold"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def load(cls, directory: str | Path, ranker_features: Sequence[str]) -> ConfidenceModel:
        """ConfidenceMismatchError when it was fit for another ranker (``ranker.txt``'s sha256) or other columns."""
        directory = Path(directory)
        refit = f"refit it with `kgqa ranker confidence --model {directory.name}` (make confidence)"
        meta = read_versioned_json(directory / CONFIDENCE_INFO, CONFIDENCE_FORMAT, ConfidenceMismatchError, refit)
        ranker_sha = sha256_file(directory / "ranker.txt")
        if meta.get("ranker_sha256") != ranker_sha:
            raise ConfidenceMismatchError(f"the confidence in {directory.name} was fit for another ranker; {refit}")
        columns = tuple(meta.get("columns", ()))
        if columns not in (confidence_columns(ranker_features), confidence_columns(ranker_features, pressure=False)):
            raise ConfidenceMismatchError(f"the confidence in {directory.name} was fit on other columns; {refit}")
        try:
            full = Calibrated(
                lgb.Booster(model_file=str(directory / CONFIDENCE_FILE)),
                (float(meta["calibration"]["a"]), float(meta["calibration"]["b"])),
            )
            screen, band = None, SCREEN_BAND
            if "screen" in meta:
                calibration = meta["screen"]["calibration"]
                screen = Calibrated(
                    lgb.Booster(model_file=str(directory / SCREEN_FILE)),
                    (float(calibration["a"]), float(calibration["b"])),
                )
                band = (float(meta["screen"]["band"][0]), float(meta["screen"]["band"][1]))
            threshold = float(meta["threshold"])
            return cls(full, columns, threshold, screen, band)
        except (lgb.basic.LightGBMError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfidenceMismatchError(f"cannot read the confidence in {directory.name}: {exc}; {refit}") from exc
