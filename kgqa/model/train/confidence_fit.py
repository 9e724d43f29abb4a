"""``kgqa ranker confidence``: fit the answer's confidence on a mix of answerable and unanswerable questions, report
it out-of-fold in SQuAD 2.0's terms and choose the default abstention threshold.

Candidate sets are collected (each cached): the question file on the full index (what the ranker is fit on), and each
mix (``kgqa data unanswerable``, one a seed) on the index of its reduced KB. Folds are disjoint in relations, as the
ranker's: for each fold, a ranker fit on the other folds' questions scores the fold's mix questions, so the scores the
confidence learns from are those of questions the ranker never saw. The confidence is then reported out-of-fold over
the same folds (a question's fold is the same in every mix), and fit on every mix.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kgqa.data.report import markdown_table, write_json
from kgqa.model.flags import add_runtime_flags

if TYPE_CHECKING:
    from kgqa.model.answerer import QuestionAnswerer
    from kgqa.model.candidate import Candidate
    from kgqa.model.rank.confidence import Pressure
    from kgqa.model.train.rankset import RankingSet

FOLDS = 5
THRESHOLD_TOLERANCE = 0.25  # points of overall accuracy
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


def add_confidence_command(ranker: argparse._SubParsersAction, default_index: Path) -> None:
    conf = ranker.add_parser(
        "confidence",
        help="fit the answer's confidence on a mix with unanswerable questions; report it out-of-fold and choose "
        "the abstention threshold",
    )
    conf.add_argument("--model", type=Path, required=True)
    conf.add_argument("--index", type=Path, default=default_index, help="the full KB's index")
    conf.add_argument("--qa", type=Path, required=True, help="the questions the ranker was fit on (dev.json)")
    conf.add_argument(
        "--mix",
        type=Path,
        action="append",
        required=True,
        help="a `kgqa data unanswerable` directory made from --qa, with the index of its KB in MIX/index; repeat for "
        "several (other seeds: other questions made unanswerable)",
    )
    conf.add_argument(
        "--cache", type=Path, help="directory for the two candidate sets: reused when there, else written"
    )
    add_runtime_flags(conf)  # --runtime, --quantize: as the service decodes
    conf.add_argument(
        "--no-pressure", action="store_true", help="leave out the constraint's pressure on the top path (ablation)"
    )
    conf.add_argument("--plot", type=Path, help="write the out-of-fold risk-coverage plot (PNG) here")
    conf.add_argument("--dry-run", action="store_true", help="report only; leave the model directory as it is")
    conf.add_argument("--json", type=Path, help="write the report as JSON")
    conf.set_defaults(run=_cmd_confidence)


def _cmd_confidence(args: argparse.Namespace) -> int:
    from kgqa.data import read_questions
    from kgqa.data.report import sha256_file
    from kgqa.model.decode.pressure import PRESSURE_COLUMNS
    from kgqa.model.rank.confidence import (
        SCREEN_BAND,
        Calibrated,
        ConfidenceModel,
        ConfidenceParams,
        confidence_columns,
        fit_booster,
        fit_platt,
        platt,
        unsure_of,
    )
    from kgqa.model.rank.ranker import RANKER_FILE, LearnedRanker

    full = _collect(args, args.index, read_questions(args.qa), "dev")
    mixes = [
        _collect(args, Path(mix) / "index", read_questions(Path(mix) / "questions.json"), f"mix-{Path(mix).name}")
        for mix in args.mix
    ]
    ranker_features = LearnedRanker.feature_names_of(args.model)
    if any(s.feature_names != ranker_features for s in (full, *mixes)):
        raise ValueError("the candidate sets' features are not the ranker's: remove the --cache files and run again")

    parts = []
    for directory, mix in zip(args.mix, mixes, strict=True):
        pressure = None if args.no_pressure else _pressure(_answerer(args, Path(directory) / "index"), mix)
        parts.append(confidence_set(full, mix, pressure))
    rows, right = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    kinds = [k for p in parts for k in p[2]]
    folds, has = np.concatenate([p[3] for p in parts]), np.concatenate([p[4] for p in parts])
    params = ConfidenceParams()
    screened = not args.no_pressure
    # the screen: the same classifier without the pressure columns (each question's first look)
    base = rows[:, : -len(PRESSURE_COLUMNS)] if screened else rows
    raw_base = out_of_fold_raw(base, right, folds[has], params)
    base_calibration = fit_platt(raw_base, right)
    confidence_has = platt(raw_base, *base_calibration)
    calibration = base_calibration
    if screened:
        raw_full = out_of_fold_raw(rows, right, folds[has], params)
        calibration = fit_platt(raw_full, right)
        unsure = unsure_of(confidence_has)
        confidence_has = np.where(unsure, platt(raw_full, *calibration), confidence_has)
    report, threshold, confidence, right_all = report_confidence(confidence_has, right, kinds, has)
    report["calibration_platt"] = list(calibration)
    if screened:
        report |= {"screen_calibration_platt": list(base_calibration), "screen_band": list(SCREEN_BAND)}
        report["pressure_computed_share"] = round(float(unsure.mean()), 4)
    report["mixes"] = [Path(mix).name for mix in args.mix]
    report["baselines_AUROC"] = baseline_aurocs(len(ranker_features), rows, right_all, has)
    print(format_confidence_report(report))
    if args.plot:
        from kgqa.model.plots import plot_risk_coverage

        plot_risk_coverage(confidence, right_all, kinds, threshold, args.plot, "out-of-fold, dev mixes")
    if not args.dry_run:
        model = ConfidenceModel(
            Calibrated(fit_booster(rows, right, params), calibration),
            confidence_columns(ranker_features, pressure=screened),
            threshold,
            Calibrated(fit_booster(base, right, params), base_calibration) if screened else None,
        )
        info = {
            "ranker_sha256": sha256_file(Path(args.model) / RANKER_FILE),
            "fit_on": f"{Path(args.qa).name}: mixes {', '.join(report['mixes'])} ({len(kinds):,} questions)",
            "params": asdict(params),
            "out_of_fold": report,
        }
        model.save(args.model, info)
        print(f"confidence written to {Path(args.model) / 'confidence.txt'} (threshold {threshold})")
    write_json(args.json, report)
    return 0


def _collect(args: argparse.Namespace, index: Path, questions: list, name: str) -> RankingSet:
    """The candidate set of ``questions`` on ``index``, with the features the model's ranker was fit on."""
    from kgqa.model.train.rankset import RankingSet, collect

    cache = Path(args.cache) / name if args.cache else None
    if cache is not None and cache.with_suffix(".npz").exists():
        print(f"candidates from {cache}")
        return RankingSet.load(cache)
    answerer = _answerer(args, index)
    f = answerer.features
    # the candidates as `kgqa ranker fit` collects them: proposed with name anchors, features of the ranker's groups
    ranking = collect(answerer.with_options(use_ranker=False).with_scorers(f.matcher, f.lexicon, f.semantic), questions)
    if cache is not None:
        ranking.save(cache)
    return ranking


def _answerer(args: argparse.Namespace, index: Path) -> QuestionAnswerer:
    from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
    from kgqa.model.modeling import read_training_info

    # the settings the ranker was fit with; the confidence being refit is not read
    options = DecodeOptions.from_training_info(read_training_info(args.model), confidence=False)
    return QuestionAnswerer.load(args.model, index, options, quantize=args.quantize, runtime=args.runtime)


def _pressure(answerer: QuestionAnswerer, mix: RankingSet) -> Pressure:
    """The pressure columns of top candidates of the mix's questions, in batches as answering computes them."""

    def pressure(places: Sequence[int], tops: Sequence[Candidate]) -> np.ndarray:
        from tqdm.auto import tqdm

        blocks = []
        step = answerer.options.batch_size
        for start in tqdm(range(0, len(places), step), desc="pressure", unit="batch"):
            texts = [answerer.options.clean(mix.questions[p].question) for p in places[start : start + step]]
            blocks.append(answerer.proposer.pressure_of([answerer.facts(t) for t in texts], tops[start : start + step]))
        return np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)

    return pressure


def confidence_set(
    full: RankingSet, mix: RankingSet, pressure: Pressure | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """The mix's confidence rows (one per question with candidates), whether each such top answer is right, and for
    every question its kind, fold and whether it has candidates. Ranker scores are out-of-fold: for each fold, a
    ranker fit on ``full``'s other folds. ``pressure``: the pressure columns of the top candidates (places in the
    mix's questions)."""
    from kgqa.data.metrics import object_right
    from kgqa.model.rank.confidence import question_rows
    from kgqa.model.rank.ranker import RankerParams, fit_booster, questions_with_gold, relation_folds

    full_folds = relation_folds([q.answer.predicate for q in full.questions], FOLDS)  # type: ignore[union-attr]
    fold_of = {q.id: int(f) for q, f in zip(full.questions, full_folds, strict=True)}
    # questions not in the file (out of scope) are dealt to folds in turn
    extra = iter(range(len(mix.questions)))
    mix_folds = np.array([fold_of.get(q.id, next(extra) % FOLDS) for q in mix.questions], dtype=np.int64)
    with_gold = questions_with_gold(full.labels, full.sizes)
    scores = np.zeros(len(mix.labels), dtype=np.float64)
    mix_rows_fold = np.repeat(mix_folds, mix.sizes)
    for f in range(FOLDS):
        keep = (full_folds != f) & with_gold
        rows = full.rows_of(keep)
        booster = fit_booster(full.features[rows], full.labels[rows], full.sizes[keep], RankerParams())
        if (mix_rows_fold == f).any():
            scores[mix_rows_fold == f] = booster.predict(mix.features[mix_rows_fold == f], num_threads=1)
    rows, has, tops = question_rows(mix.features, scores, mix.candidates, pressure)
    answered = [q for q, h in zip(mix.questions, has, strict=True) if h]
    right = [object_right(top.as_answer(), q.answer) for q, top in zip(answered, tops, strict=True)]
    kinds = [q.kind or "answerable" for q in mix.questions]
    return rows, np.array(right, dtype=bool), kinds, mix_folds, has


def out_of_fold_raw(rows: np.ndarray, right: np.ndarray, folds: np.ndarray, params: Any) -> np.ndarray:
    """Each row's uncalibrated confidence from a model fit on the other folds (``folds``: one per row)."""
    from kgqa.model.rank.confidence import fit_booster

    raw = np.zeros(len(rows), dtype=np.float64)
    for f in np.unique(folds):
        booster = fit_booster(rows[folds != f], right[folds != f], params)
        raw[folds == f] = booster.predict(rows[folds == f], num_threads=1)
    return raw


def report_confidence(
    confidence_has: np.ndarray, right: np.ndarray, kinds: Sequence[str], has: np.ndarray
) -> tuple[dict[str, Any], float, np.ndarray, np.ndarray]:
    """Choose the threshold and report, from the out-of-fold confidences of the questions with candidates: (report,
    threshold, every question's confidence and rightness; a question without candidates has confidence 0 and
    abstains)."""
    from kgqa.data.abstention import abstention_report

    confidence = np.zeros(len(kinds))
    confidence[has] = confidence_has
    right_all = np.zeros(len(kinds), dtype=bool)
    right_all[has] = right
    by_threshold = []
    for t in THRESHOLDS:
        r = abstention_report(kinds, right_all, confidence < t, confidence)
        by_threshold.append(
            {"threshold": t} | {k: r[k] for k in ("HasAns_EM_O", "NoAns", "overall")} | r["NoAns_by_kind"]
        )
    threshold = choose_threshold(by_threshold)
    report = abstention_report(kinds, right_all, confidence < threshold, confidence)
    report |= {"threshold": threshold, "by_threshold": by_threshold}
    return report, threshold, confidence, right_all


def baseline_aurocs(width: int, rows: np.ndarray, right_all: np.ndarray, has: np.ndarray) -> dict[str, Any]:
    """AUROC of single columns used as the confidence: the ranker's (out-of-fold) score, and the top candidate's
    share of the ranker's softmax among the question's candidates."""
    from kgqa.data.abstention import auroc
    from kgqa.model.rank.confidence import SCORE_COLUMNS

    out = {}
    for name in ("score", "score_share", "score_gap"):
        column = np.full(len(has), -1e9)
        column[has] = rows[:, width + SCORE_COLUMNS.index(name)]
        out[name] = round(auroc(column, right_all) or 0.0, 4)
    return out


def choose_threshold(by_threshold: Sequence[dict[str, Any]], tolerance: float = THRESHOLD_TOLERANCE) -> float:
    """The lowest threshold whose overall accuracy on the mix is within ``tolerance`` points of the best (SQuAD 2.0
    picks the best; near it the curve is flat, and a lower threshold answers more of the answerable questions, which
    a service meets more often than this mix holds them)."""
    best = max(r["overall"] for r in by_threshold)
    return float(min(r["threshold"] for r in by_threshold if r["overall"] >= best - tolerance))


def format_confidence_report(report: dict[str, Any]) -> str:
    kinds = list(report["NoAns_by_kind"])
    table = markdown_table(
        ["threshold", "HasAns EM_O", "NoAns", *[f"NoAns {k}" for k in kinds], "overall"],
        [
            [r["threshold"], r["HasAns_EM_O"], r["NoAns"], *[r[k] for k in kinds], r["overall"]]
            for r in report["by_threshold"]
        ],
    )
    head = (
        f"out-of-fold over {report['questions']:,} questions {report['counts']}: AUROC {report['AUROC']}, "
        f"ECE (answerable) {report['ECE_answerable']}, (all) {report['ECE_all']}, "
        f"coverage at 95% precision {report['coverage_at_95_precision']}%, "
        f"at 99% {report['coverage_at_99_precision']}%; HasAns EM_O never abstaining "
        f"{report['HasAns_EM_O_never_abstaining']}; chosen threshold {report['threshold']}"
    )
    return head + "\n\n" + table
